//! `--sync`: a request is answered only once what the plugin wrote to its
//! directory is on disk, and concurrent requests share the flushes.
//!
//! The host does not know which files a plugin wrote, so it flushes the file
//! system that holds the directory (`syncfs`). One flush covers every write
//! that finished before it started: a request takes a ticket after its
//! plugin returned and waits for a flush that started after that ticket.
//! While one flush runs, the requests that arrive meanwhile queue for the
//! next, so there is at most one flush running and one waiting, however many
//! requests come (group commit).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use tokio::sync::Mutex;

pub struct Flusher {
    dir: Arc<File>,
    /// Tickets handed out so far; a ticket is the count after taking it.
    issued: AtomicU64,
    /// Every ticket up to this one is covered by a finished flush.
    covered: AtomicU64,
    /// Held while a flush runs.
    flushing: Mutex<()>,
}

impl Flusher {
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        let dir = File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
        Ok(Flusher {
            dir: Arc::new(dir),
            issued: AtomicU64::new(0),
            covered: AtomicU64::new(0),
            flushing: Mutex::new(()),
        })
    }

    /// Returns once every write that finished before this call is durable.
    pub async fn flush(&self) -> std::io::Result<()> {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let _turn = self.flushing.lock().await;
        if self.covered.load(Ordering::SeqCst) >= ticket {
            // A flush that started after our ticket already finished.
            return Ok(());
        }
        // Every ticket issued so far belongs to a write that has finished.
        let covering = self.issued.load(Ordering::SeqCst);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || nix::unistd::syncfs(&*dir))
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::from)?;
        self.covered.store(covering, Ordering::SeqCst);
        Ok(())
    }
}

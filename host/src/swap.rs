//! Hot swap: the host watches its `--plugin` file and loads a new version
//! when the file is replaced (or on SIGHUP), without stopping.
//!
//! The new version is read, compiled, linked and asked to describe itself
//! off the request path; only a version that passes all of that is
//! installed. Requests in flight finish on the version they started with, and
//! the host-kept state carries over. A version that describes itself
//! differently (another name, other required services) is registered anew.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use protocol::record::ServiceRecord;

use crate::control::Control;
use crate::plugin::bindings::Description;
use crate::server::{Active, App};

/// How often the file is looked at. A change is acted on once the file has
/// looked the same for one more poll, so that a copy still being written is
/// not loaded half-way.
const POLL: Duration = Duration::from_millis(50);

/// What the command line says about the service's identity, over what the
/// plugin describes.
#[derive(Debug, Clone)]
pub struct Overrides {
    pub name: Option<String>,
    pub requires: Option<Vec<String>>,
}

impl Overrides {
    /// The name and required services to register for a plugin that
    /// describes itself as `description`.
    pub fn apply(&self, description: &Description) -> (String, Vec<String>) {
        (
            self.name.clone().unwrap_or(description.name.clone()),
            self.requires
                .clone()
                .unwrap_or(description.requires.clone()),
        )
    }
}

/// Size, modification time and inode: a rename into place changes the inode,
/// a copy over the file changes size or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
    })
}

pub struct Swapper {
    pub app: std::sync::Arc<App>,
    pub path: PathBuf,
    pub overrides: Overrides,
}

impl Swapper {
    /// Watches the file, and swaps on a reload (SIGHUP), until `control`
    /// says stop.
    pub async fn run(self, mut control: Control) {
        let mut stop = std::pin::pin!(control.stopped());
        let mut ticker = tokio::time::interval(POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // `loaded`: the file as last loaded; `seen`: as at the last poll.
        let mut loaded = stamp(&self.path);
        let mut seen = loaded;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let now = stamp(&self.path);
                    if now != seen {
                        seen = now;
                        continue;
                    }
                    if now.is_some() && now != loaded {
                        loaded = now;
                        self.swap("the plugin file changed").await;
                    }
                }
                Some(()) = control.reload.recv() => {
                    loaded = stamp(&self.path);
                    seen = loaded;
                    self.swap("SIGHUP").await;
                }
                () = &mut stop => return,
            }
        }
    }

    async fn swap(&self, why: &str) {
        // Counted for the version that was serving when the swap began.
        let metrics = self.app.active().env.metrics.clone();
        match self.try_swap().await {
            Ok(Some(digest)) => {
                metrics.swap(true);
                tracing::info!(why, version = %short(&digest), "plugin swapped");
            }
            Ok(None) => tracing::info!(why, "plugin unchanged"),
            Err(e) => {
                metrics.swap(false);
                tracing::error!(
                    why,
                    "new plugin refused, the running version keeps serving: {e:#}"
                );
            }
        }
    }

    /// Loads and installs the file's version; `None` when it is the version
    /// already serving.
    async fn try_swap(&self) -> anyhow::Result<Option<String>> {
        let app = &self.app;
        let plugin = app
            .engine
            .load(&self.path, app.shared.loading_env())
            .await?;
        let current = app.active();
        if plugin.digest == current.plugin.digest {
            return Ok(None);
        }
        let (name, requires) = self.overrides.apply(&plugin.description);
        let record =
            ServiceRecord::new(name.clone(), app.discovery.record().addr, requires.clone());
        record.validate()?;
        if let Err(e) = app.discovery.change_record(record).await {
            // The registry will hear of the new identity at the next
            // registration; serving the new version is still right.
            tracing::warn!(error = %e, "cannot register the new description");
        }
        let digest = plugin.digest.clone();
        app.install(Active {
            plugin,
            env: app.shared.env(name, requires),
        });
        Ok(Some(digest))
    }
}

/// The first 12 hex digits of a digest: enough to tell versions apart in logs.
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

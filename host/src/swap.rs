//! Hot swap: the host watches its `--plugin` file and loads a new version
//! when the file is replaced (or on SIGHUP), without stopping.
//!
//! The file is watched through the file system's events (inotify): a file
//! renamed into place, or written and closed, is loaded at once. A slow
//! poll backs the events up where they do not work (network file systems),
//! acting on a change once the file has stayed the same for one poll.
//!
//! The new version is read, compiled, linked and asked to describe itself
//! off the request path; only a version that passes all of that is
//! installed. Requests in flight finish on the version they started with, and
//! the host-kept state carries over. A version that describes itself
//! differently (another name, other required services) is registered anew;
//! one that takes the name of another service of the same process is
//! refused, as any bad version is.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use protocol::record::ServiceRecord;
use tokio::sync::mpsc;

use crate::control::Control;
use crate::local::LocalServices;
use crate::plugin::Plugin;
use crate::server::{Active, App};

/// How often the file is looked at besides the events. A change is acted on
/// once the file has looked the same for one more poll, so that a copy
/// still being written is not loaded half-way.
const POLL: Duration = Duration::from_secs(1);

/// What the command line says about the service's identity, over what the
/// plugin describes.
#[derive(Debug, Clone)]
pub struct Overrides {
    pub name: Option<String>,
    pub requires: Option<Vec<String>>,
}

impl Overrides {
    /// The name and required services to register for `plugin`: what it
    /// describes, or for a standard component, which cannot, what the
    /// command line says (a name is then required).
    pub fn apply(&self, plugin: &Plugin) -> anyhow::Result<(String, Vec<String>)> {
        let description = &plugin.description;
        let name = match (&self.name, plugin.describes_itself()) {
            (Some(name), _) => name.clone(),
            (None, true) => description.name.clone(),
            (None, false) => anyhow::bail!(
                "a wasi:http/proxy component cannot say its service name: give --name (`name = \"...\"` in a --config file), and --requires (`requires`) for the services it calls"
            ),
        };
        let requires = self
            .requires
            .clone()
            .unwrap_or(description.requires.clone());
        Ok((name, requires))
    }
}

/// Size, modification time and inode: a rename into place changes the inode,
/// a copy over the file changes size or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// The file as it is now; taken before a version is read, so that a change
/// made while it loads is seen as one.
pub fn stamp(path: &std::path::Path) -> Option<Stamp> {
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
    /// The services of this process: a new version may not take the name
    /// of another one.
    pub local: std::sync::Arc<LocalServices>,
    pub path: PathBuf,
    pub overrides: Overrides,
    /// The file as it was when the serving version was read.
    pub loaded: Option<Stamp>,
}

impl Swapper {
    /// Watches the file, and swaps on a reload (SIGHUP), until `control`
    /// says stop; then waits to be aborted. It never returns: it is one of
    /// the host's essential tasks, whose end the host takes for a bug, and
    /// an end on a stop could be seen before the stop itself. The host
    /// looks at both in one pass: the stop first, found not yet there, then
    /// the tasks, found with this one ended, the stop having come and this
    /// task seen it in between, on another thread (a host stopped while it
    /// registered exited 1 naming this task, once in a CI run).
    pub async fn run(self, mut control: Control) {
        let mut stop = std::pin::pin!(control.stopped());
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let _watcher = watch(&self.path, events_tx);
        let mut ticker = tokio::time::interval(POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // `loaded`: the file as last loaded; `seen`: as at the last poll.
        let mut loaded = self.loaded;
        let mut seen = loaded;
        loop {
            tokio::select! {
                Some(()) = events.recv() => {
                    let now = stamp(&self.path);
                    if now.is_some() && now != loaded {
                        (loaded, seen) = (now, now);
                        self.swap("the plugin file changed").await;
                    }
                }
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
                () = &mut stop => return std::future::pending().await,
            }
        }
    }

    async fn swap(&self, why: &str) {
        fail::fail_point!("host::swap");
        // Counted for the version that was serving when the swap began.
        let metrics = self.app.active().env.metrics.clone();
        let bytes = stamp(&self.path).map(|s| s.len);
        tracing::info!(why, plugin = %self.path.display(), bytes, "loading the plugin file");
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
        let (name, requires) = self.overrides.apply(&plugin)?;
        // Held until the new version is installed: a swap of another
        // service to the same name waits, then finds it taken.
        let _claim = self.local.claim(app, &name).await?;
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

/// Watches the directory that holds `path` (a file renamed into place is a
/// new file: a watch on the old one would end with it) and sends a unit for
/// each event that may complete a new version of the file. `None`, with a
/// warning, where the file system offers no events: the poll still works.
fn watch(path: &Path, changes: mpsc::UnboundedSender<()>) -> Option<RecommendedWatcher> {
    let name = path.file_name()?.to_owned();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let handler = move |event: notify::Result<Event>| {
        let Ok(event) = event else { return };
        let completes = matches!(
            event.kind,
            EventKind::Create(_)
                | EventKind::Modify(ModifyKind::Name(_))
                | EventKind::Access(AccessKind::Close(AccessMode::Write))
        );
        if completes && event.paths.iter().any(|p| p.file_name() == Some(&name)) {
            let _ = changes.send(());
        }
    };
    let watching = notify::recommended_watcher(handler).and_then(|mut watcher| {
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map(|()| watcher)
    });
    match watching {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "no file events; the plugin file is polled every {POLL:?}");
            None
        }
    }
}

/// The first 12 hex digits of a digest: enough to tell versions apart in logs.
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

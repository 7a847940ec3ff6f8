//! A fresh directory for one test or benchmark case (a plugin's `--dir`, a
//! compile cache, a plugin file to swap), removed when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context as _;

/// A directory under the system's temporary directory, named
/// `sparrow-LABEL-PID-N` so that concurrent tests and runs never share one.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory; panics when it cannot be made.
    pub fn new(label: &str) -> TempDir {
        TempDir::try_new(label).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A fresh directory, or why it cannot be made.
    pub fn try_new(label: &str) -> anyhow::Result<TempDir> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("sparrow-{label}-{}-{n}", std::process::id()));
        // A leftover of an earlier process with the same pid.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replaces `target` with a copy of `source` the way deployment tools do:
/// write a temporary file beside it, then rename it into place (a hot swap
/// never sees half a file).
pub fn install_atomically(source: &Path, target: &Path) {
    let temporary = target.with_extension("tmp");
    std::fs::copy(source, &temporary).expect("copying the new version");
    std::fs::rename(&temporary, target).expect("renaming it into place");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_is_fresh_and_gone_once_dropped() {
        let (a, b) = (TempDir::new("unit"), TempDir::new("unit"));
        assert_ne!(a.path(), b.path());
        std::fs::write(a.join("file"), "x").unwrap();
        let path = a.path().to_owned();
        drop(a);
        assert!(!path.exists());
        assert!(b.path().is_dir());
    }
}

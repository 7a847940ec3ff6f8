//! Appends to the files of a service's granted directory (`host --dir`), the
//! host side of `files.append`: each append is one `write` on a descriptor
//! opened with `O_APPEND`, so it lands whole at the end of the file and the
//! appends of concurrent requests never interleave.
//!
//! A fresh instance that opened the file itself paid for an open, a stat
//! and a close through WASI on every request, more than the rest of the log
//! service's work (measured: `POST /log` ran at 0.65 of the plain echo
//! host's rate, and at its full rate without them). The host keeps the
//! descriptors open instead, the most recently used `--max-open-files` of
//! them per service.
//!
//! A file that is renamed or removed (log rotation) is not written to any
//! more: the host watches the directory (inotify, for names renamed away or
//! removed only, not for writes), and after such an event a held file's
//! name is looked up again before its next append; when the name no longer
//! leads to the file held open, it is opened (or created) anew, so lines do
//! not go on into a file nobody can find. Between the rename and its event
//! (well under a millisecond) an append may still land in the renamed file,
//! as with any daemon writing a log. Where inotify is not available, the
//! name is looked up before every append (one `fstatat`; measured, a third
//! of the cost of an append).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::stat::{Mode, fstat, fstatat};
use protocol::locks::lock;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The longest file name accepted, in bytes (Linux's `NAME_MAX`).
const MAX_NAME: usize = 255;

/// The count of renames when nothing watches the directory (no watch could
/// be set up, or it ended): never taken as current.
const UNWATCHED: u64 = u64::MAX;

/// Why an append wrote nothing, or not all of it.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("no directory granted to this service (host --dir)")]
    NoDirectory,
    #[error("{name:?} is not a file name of the granted directory: {why}")]
    BadName { name: String, why: &'static str },
    #[error("{name}: {source}")]
    Io { name: String, source: io::Error },
    #[error("{name}: only {written} of {len} bytes written (is the disk full?)")]
    Short {
        name: String,
        written: usize,
        len: usize,
    },
}

/// One service's granted directory and the files of it held open.
pub struct Appends {
    dir: OwnedFd,
    /// Least recently used first; a handful of files, so a scan.
    open: Mutex<Vec<Held>>,
    max_open: usize,
    /// Names renamed away or removed in the directory so far, as counted
    /// by the watch; [`UNWATCHED`]: every append looks its name up.
    renames: Arc<AtomicU64>,
}

struct Held {
    name: String,
    file: Arc<File>,
    /// Device and inode: what the name must still lead to.
    id: (u64, u64),
    /// `renames` when the name was last seen to lead to the file.
    checked_at: u64,
}

impl Appends {
    /// The directory `dir`, holding at most `max_open` files open (at least
    /// one). Within a tokio runtime, whose task watches the directory.
    pub fn open(dir: &Path, max_open: usize) -> io::Result<Self> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = open(dir, flags, Mode::empty()).map_err(io::Error::from)?;
        let renames = Arc::new(AtomicU64::new(UNWATCHED));
        if let Err(e) = watch_renames(dir, &renames) {
            tracing::warn!(
                dir = %dir.display(),
                "cannot watch the directory ({e}): each append looks its file up first"
            );
        }
        Ok(Appends {
            dir: fd,
            open: Mutex::new(Vec::new()),
            max_open: max_open.max(1),
            renames,
        })
    }

    /// Appends `data` to the file `name` of the directory, creating it
    /// (mode 0644 before the umask) when it does not exist.
    pub fn append(&self, name: &str, data: &[u8]) -> Result<(), AppendError> {
        check_name(name)?;
        let io = |source| AppendError::Io {
            name: name.to_owned(),
            source,
        };
        let file = self.file(name).map_err(io)?;
        let written = (&*file).write(data).map_err(io)?;
        if written != data.len() {
            return Err(AppendError::Short {
                name: name.to_owned(),
                written,
                len: data.len(),
            });
        }
        Ok(())
    }

    /// The file `name` names now, open for appending.
    fn file(&self, name: &str) -> io::Result<Arc<File>> {
        // Read before looking the name up: a rename after it counts again.
        let renames = self.renames.load(Ordering::Acquire);
        let mut open = lock(&self.open);
        if let Some(at) = open.iter().position(|held| held.name == name) {
            let mut held = open.remove(at);
            let unchanged = (renames != UNWATCHED && held.checked_at == renames)
                || self.lookup(name)? == Some(held.id);
            if unchanged {
                held.checked_at = renames;
                let file = held.file.clone();
                open.push(held);
                return Ok(file);
            }
        }
        // O_NOFOLLOW: the name is a plain file of the directory, never a
        // way out of it.
        let flags = OFlag::O_WRONLY
            | OFlag::O_APPEND
            | OFlag::O_CREAT
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC;
        let fd = openat(&self.dir, name, flags, Mode::from_bits_truncate(0o644))?;
        let stat = fstat(fd.as_fd())?;
        let file = Arc::new(File::from(fd));
        if open.len() >= self.max_open {
            open.remove(0);
        }
        open.push(Held {
            name: name.to_owned(),
            file: file.clone(),
            id: (stat.st_dev, stat.st_ino),
            checked_at: renames,
        });
        Ok(file)
    }

    /// Device and inode of what `name` leads to now, if anything.
    fn lookup(&self, name: &str) -> io::Result<Option<(u64, u64)>> {
        match fstatat(&self.dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some((stat.st_dev, stat.st_ino))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Keeps in `renames` a count of the names renamed away from or removed in
/// `dir` (and of the directory's own move or removal, and of lost events),
/// by a task that lives as long as the runtime; it is left [`UNWATCHED`]
/// when no watch can be set up, and set back to it if the watch ends.
fn watch_renames(dir: &Path, renames: &Arc<AtomicU64>) -> io::Result<()> {
    tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    let mask = AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_DELETE_SELF;
    inotify.add_watch(dir, mask)?;
    // SAFETY: `Watch` owns the inotify descriptor, which stays open and is
    // the one `as_raw_fd` returns until the `AsyncFd` is dropped.
    let events = unsafe { AsyncFd::register_with_interest(Watch(inotify), Interest::READABLE) }
        .map_err(io::Error::from)?;
    renames.store(0, Ordering::Release);
    let counted = renames.clone();
    tokio::spawn(async move {
        loop {
            let Ok(mut ready) = events.readable().await else {
                break;
            };
            match ready.get_inner().0.read_events() {
                // Any event (an overflow too) means: look the names up again.
                Ok(_) => {
                    counted.fetch_add(1, Ordering::Release);
                }
                Err(Errno::EAGAIN) => ready.clear_ready(),
                Err(e) => {
                    tracing::warn!("watching the directory for renames: {e}");
                    break;
                }
            }
        }
        // Unwatched from here on: every append looks its name up.
        counted.store(UNWATCHED, Ordering::Release);
    });
    Ok(())
}

/// The inotify descriptor, for tokio's reactor.
struct Watch(Inotify);

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A name of a file directly in the directory: no path.
fn check_name(name: &str) -> Result<(), AppendError> {
    let why = if name.is_empty() {
        "empty"
    } else if name == "." || name == ".." {
        "not a file"
    } else if name.contains('/') {
        "a path, not a name"
    } else if name.contains('\0') {
        "contains NUL"
    } else if name.len() > MAX_NAME {
        "longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(AppendError::BadName {
        name: name.chars().take(64).collect(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sparrow-appends-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Waits until the watch has counted a rename past `seen`.
    fn wait_for_rename(appends: &Appends, seen: u64) {
        let renames = &appends.renames;
        assert_ne!(seen, UNWATCHED, "the directory is watched");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while renames.load(Ordering::Acquire) == seen {
            assert!(std::time::Instant::now() < deadline, "no rename event");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn appends_land_at_the_end_and_follow_a_rotated_file() {
        let dir = temp_dir("rotate");
        let appends = Appends::open(&dir, 4).unwrap();
        appends.append("a.log", b"one\n").unwrap();
        appends.append("a.log", b"two\n").unwrap();
        let seen = appends.renames.load(Ordering::Acquire);
        std::fs::rename(dir.join("a.log"), dir.join("a.log.1")).unwrap();
        wait_for_rename(&appends, seen);
        appends.append("a.log", b"three\n").unwrap();
        assert_eq!(std::fs::read(dir.join("a.log.1")).unwrap(), b"one\ntwo\n");
        assert_eq!(std::fs::read(dir.join("a.log")).unwrap(), b"three\n");
        let seen = appends.renames.load(Ordering::Acquire);
        std::fs::remove_file(dir.join("a.log")).unwrap();
        wait_for_rename(&appends, seen);
        appends.append("a.log", b"four\n").unwrap();
        assert_eq!(std::fs::read(dir.join("a.log")).unwrap(), b"four\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Outside a runtime there is no watch: every append looks its name up,
    /// and a rotation is followed at once.
    #[test]
    fn unwatched_every_append_follows_a_rotated_file() {
        let dir = temp_dir("unwatched");
        let appends = Appends::open(&dir, 4).unwrap();
        assert_eq!(appends.renames.load(Ordering::Acquire), UNWATCHED);
        appends.append("a.log", b"one\n").unwrap();
        std::fs::rename(dir.join("a.log"), dir.join("a.log.1")).unwrap();
        appends.append("a.log", b"two\n").unwrap();
        assert_eq!(std::fs::read(dir.join("a.log.1")).unwrap(), b"one\n");
        assert_eq!(std::fs::read(dir.join("a.log")).unwrap(), b"two\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn only_plain_names_of_the_directory_are_taken() {
        let dir = temp_dir("names");
        let appends = Appends::open(&dir, 1).unwrap();
        for bad in ["", ".", "..", "../x", "a/b", "a\0b", &"x".repeat(256)] {
            let refused = appends.append(bad, b"x").unwrap_err();
            assert!(
                matches!(refused, AppendError::BadName { .. }),
                "{bad:?}: {refused}"
            );
        }
        std::os::unix::fs::symlink("/etc/hostname", dir.join("link")).unwrap();
        assert!(matches!(
            appends.append("link", b"x"),
            Err(AppendError::Io { .. })
        ));
        // More files than are held open: each still gets its own lines.
        for name in ["a", "b", "a", "c", "a"] {
            appends.append(name, name.as_bytes()).unwrap();
        }
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"aaa");
        assert_eq!(std::fs::read(dir.join("c")).unwrap(), b"c");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

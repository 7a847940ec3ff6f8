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
//! more: before each append the name is looked up again, and when it no
//! longer names the file held open, the file is opened (or created) anew.
//! That costs one `fstatat` per append, and no line goes to a file nobody
//! can find.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{Mode, fstat, fstatat};
use protocol::locks::lock;

/// The longest file name accepted, in bytes (Linux's `NAME_MAX`).
const MAX_NAME: usize = 255;

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
}

struct Held {
    name: String,
    file: Arc<File>,
    /// Device and inode: what the name must still lead to.
    id: (u64, u64),
}

impl Appends {
    /// The directory `dir`, holding at most `max_open` files open (at least
    /// one).
    pub fn open(dir: &Path, max_open: usize) -> io::Result<Self> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = open(dir, flags, Mode::empty()).map_err(io::Error::from)?;
        Ok(Appends {
            dir,
            open: Mutex::new(Vec::new()),
            max_open: max_open.max(1),
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
        let now = match fstatat(&self.dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Some((stat.st_dev, stat.st_ino)),
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(e.into()),
        };
        let mut open = lock(&self.open);
        if let Some(at) = open.iter().position(|held| held.name == name) {
            let held = open.remove(at);
            if Some(held.id) == now {
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
        });
        Ok(file)
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

    #[test]
    fn appends_land_at_the_end_and_follow_a_rotated_file() {
        let dir = temp_dir("rotate");
        let appends = Appends::open(&dir, 4).unwrap();
        appends.append("a.log", b"one\n").unwrap();
        appends.append("a.log", b"two\n").unwrap();
        std::fs::rename(dir.join("a.log"), dir.join("a.log.1")).unwrap();
        appends.append("a.log", b"three\n").unwrap();
        assert_eq!(std::fs::read(dir.join("a.log.1")).unwrap(), b"one\ntwo\n");
        assert_eq!(std::fs::read(dir.join("a.log")).unwrap(), b"three\n");
        std::fs::remove_file(dir.join("a.log")).unwrap();
        appends.append("a.log", b"four\n").unwrap();
        assert_eq!(std::fs::read(dir.join("a.log")).unwrap(), b"four\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_plain_names_of_the_directory_are_taken() {
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

//! The key-value state the host keeps for its plugin (WIT `state`).
//!
//! It lives in the host, not in the plugin, because every request runs in a
//! fresh instance: this is where a counter survives requests and swaps. With
//! `--state FILE` every change is also appended to a journal (one JSON line,
//! one write, in the order of the changes) so that the state survives a
//! restart or a crash of the host; the journal is compacted when it is
//! opened.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use protocol::locks::lock;
use serde::{Deserialize, Serialize};

/// Text keys to text values, shared by every request of this host.
#[derive(Debug, Default)]
pub struct KvStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, String>,
    journal: Option<File>,
}

/// One line of the journal.
#[derive(Serialize, Deserialize)]
struct Change<'a> {
    key: std::borrow::Cow<'a, str>,
    value: std::borrow::Cow<'a, str>,
}

impl KvStore {
    /// A store kept in `path`: replays its journal, rewrites it compacted,
    /// and appends every later change to it.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let shown = path.display();
        let mut entries = HashMap::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    // A crash can cut the last line short; anything else
                    // broken means the file is not ours.
                    match serde_json::from_str::<Change>(line) {
                        Ok(change) => {
                            entries.insert(change.key.into_owned(), change.value.into_owned());
                        }
                        Err(_) if n + 1 == text.lines().count() => {
                            tracing::warn!(file = %shown, "ignoring a torn last line");
                        }
                        Err(e) => anyhow::bail!("state file {shown}, line {}: {e}", n + 1),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read state file {shown}")),
        }

        let compacted = path.with_extension("compacting");
        let mut out = String::new();
        for (key, value) in &entries {
            out.push_str(&journal_line(key, value));
        }
        std::fs::write(&compacted, out)
            .and_then(|()| std::fs::rename(&compacted, path))
            .with_context(|| format!("cannot write state file {shown}"))?;
        let journal = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open state file {shown}"))?;
        Ok(KvStore {
            inner: Mutex::new(Inner {
                entries,
                journal: Some(journal),
            }),
        })
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().entries.get(key).cloned()
    }

    pub fn set(&self, key: String, value: String) {
        let mut inner = self.lock();
        if let Err(e) = inner.record(&key, &value) {
            tracing::error!(key, error = %e, "cannot persist the state change");
        }
        inner.entries.insert(key, value);
    }

    /// Adds `delta` to the integer at `key` (0 when unset) under one lock, so
    /// concurrent increments are never lost or repeated.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, String> {
        let mut inner = self.lock();
        let current = match inner.entries.get(key) {
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| format!("value of '{key}' is not an integer"))?,
            None => 0,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| format!("incrementing '{key}' overflows"))?;
        let value = next.to_string();
        // Journal first: an increment that was not kept is not handed out.
        inner
            .record(key, &value)
            .map_err(|e| format!("cannot persist '{key}': {e}"))?;
        inner.entries.insert(key.to_owned(), value);
        Ok(next)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map half-written
        // (every update is one insert), so a poisoned lock is still usable.
        lock(&self.inner)
    }
}

impl Inner {
    fn record(&mut self, key: &str, value: &str) -> std::io::Result<()> {
        match &mut self.journal {
            // One write per line: a crash leaves whole lines and at most one
            // torn last line.
            Some(journal) => journal.write_all(journal_line(key, value).as_bytes()),
            None => Ok(()),
        }
    }
}

fn journal_line(key: &str, value: &str) -> String {
    let change = Change {
        key: key.into(),
        value: value.into(),
    };
    let mut line = serde_json::to_string(&change).expect("strings always serialise");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::KvStore;

    #[test]
    fn increment_counts_and_refuses_text() {
        let kv = KvStore::default();
        assert_eq!(kv.increment("n", 1), Ok(1));
        assert_eq!(kv.increment("n", 41), Ok(42));
        kv.set("t".into(), "abc".into());
        assert!(kv.increment("t", 1).is_err());
        kv.set("max".into(), i64::MAX.to_string());
        assert!(kv.increment("max", 1).is_err());
    }

    #[test]
    fn a_journal_survives_reopening_and_a_torn_last_line() {
        let dir = std::env::temp_dir().join(format!("sparrow-kv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.jsonl");
        let _ = std::fs::remove_file(&path);
        {
            let kv = KvStore::open(&path).unwrap();
            assert_eq!(kv.increment("visits", 1), Ok(1));
            assert_eq!(kv.increment("visits", 1), Ok(2));
            kv.set("name".into(), "line\nbreak".into());
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"key\":\"vis"))
            .unwrap();
        let kv = KvStore::open(&path).unwrap();
        assert_eq!(kv.increment("visits", 1), Ok(3));
        assert_eq!(kv.get("name").as_deref(), Some("line\nbreak"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

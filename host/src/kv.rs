//! The key-value state the host keeps for its plugin (WIT `state`).
//!
//! It lives in the host, not in the plugin, because every request runs in a
//! fresh instance: this is where a counter survives requests and swaps. With
//! `--state FILE` every change is also appended to a journal (one JSON line,
//! one write, in the order of the changes) so that the state survives a
//! restart or a crash of the host; the journal is compacted when it is
//! opened, and again whenever it holds more than twice as many lines as
//! there are keys (and at least [`COMPACT_AFTER`]), so it stays bounded while
//! the host runs.
//!
//! Keys, values and their number are bounded ([`StateLimits`]): a plugin
//! cannot make the host's memory or journal grow without end.
//!
//! A journal written under higher limits than the host now has is loaded
//! whole, with a warning naming each record past them: the limits bound
//! what the plugin adds, not what it kept. Dropping those records would
//! lose data without asking, and refusing to start would make lowering a
//! limit an outage until someone edits the journal by hand; loaded, they
//! stay readable, and every later change is held to the new limits (no new
//! key past the count, no longer key or value).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use protocol::locks::lock;
use serde::{Deserialize, Serialize};

/// A journal is never compacted below this many lines: rewriting a small
/// file often would cost more than it saves.
pub const COMPACT_AFTER: usize = 1024;

/// How big the state may grow.
#[derive(Debug, Clone, Copy)]
pub struct StateLimits {
    pub max_keys: usize,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
}

impl Default for StateLimits {
    fn default() -> Self {
        StateLimits {
            max_keys: 10_000,
            max_key_bytes: 1024,
            max_value_bytes: 64 * 1024,
        }
    }
}

/// Which size bound a record passes: its key's, checked first, or its
/// value's; each with the record's size.
enum Oversize {
    Key(usize),
    Value(usize),
}

impl StateLimits {
    /// The bound (`key`, `value`) passes, if any.
    fn oversize(&self, key: &str, value: &str) -> Option<Oversize> {
        if key.len() > self.max_key_bytes {
            Some(Oversize::Key(key.len()))
        } else if value.len() > self.max_value_bytes {
            Some(Oversize::Value(value.len()))
        } else {
            None
        }
    }
}

/// Text keys to text values, shared by every request of this host.
#[derive(Debug, Default)]
pub struct KvStore {
    inner: Mutex<Inner>,
    limits: StateLimits,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, String>,
    journal: Option<Journal>,
}

#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: File,
    /// Lines in the file now.
    lines: usize,
}

/// One line of the journal.
#[derive(Serialize, Deserialize)]
struct Change<'a> {
    key: std::borrow::Cow<'a, str>,
    value: std::borrow::Cow<'a, str>,
}

impl KvStore {
    /// A store in memory only.
    pub fn in_memory(limits: StateLimits) -> Self {
        KvStore {
            inner: Mutex::default(),
            limits,
        }
    }

    /// A store kept in `path`: replays its journal, rewrites it compacted,
    /// and appends every later change to it.
    pub fn open(path: &Path, limits: StateLimits) -> anyhow::Result<Self> {
        let entries = replay(path)?;
        for excess in past_limits(&entries, &limits) {
            tracing::warn!(
                "state file {}: {excess}; loaded all the same, and later changes keep to the limit",
                path.display()
            );
        }
        let journal = Journal::compact(path, &entries)
            .with_context(|| format!("cannot write state file {}", path.display()))?;
        Ok(KvStore {
            inner: Mutex::new(Inner {
                entries,
                journal: Some(journal),
            }),
            limits,
        })
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().entries.get(key).cloned()
    }

    /// Sets `key`; refused beyond the limits, and when the change cannot be
    /// journaled (a change that would be lost at the next restart is not
    /// made).
    pub fn set(&self, key: String, value: String) -> Result<(), String> {
        let mut inner = self.lock();
        self.check(&inner, &key, &value)?;
        inner
            .record(&key, &value)
            .map_err(|e| format!("cannot persist '{key}': {e}"))?;
        inner.entries.insert(key, value);
        Ok(())
    }

    fn check(&self, inner: &Inner, key: &str, value: &str) -> Result<(), String> {
        let limits = &self.limits;
        match limits.oversize(key, value) {
            Some(Oversize::Key(bytes)) => {
                return Err(format!(
                    "key of {bytes} bytes: at most {} bytes",
                    limits.max_key_bytes
                ));
            }
            Some(Oversize::Value(bytes)) => {
                return Err(format!(
                    "value of {bytes} bytes for '{key}': at most {} bytes",
                    limits.max_value_bytes
                ));
            }
            None => {}
        }
        if !inner.entries.contains_key(key) && inner.entries.len() >= limits.max_keys {
            return Err(format!(
                "'{key}' would be key {}: at most {}",
                inner.entries.len() + 1,
                limits.max_keys
            ));
        }
        Ok(())
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
        self.check(&inner, key, &value)?;
        // Journal first: an increment that was not kept is not handed out.
        inner
            .record(key, &value)
            .map_err(|e| format!("cannot persist '{key}': {e}"))?;
        // The key is copied only the first time: a counter bumped on every
        // request (visit's) keeps its key's allocation.
        match inner.entries.get_mut(key) {
            Some(kept) => *kept = value,
            None => {
                inner.entries.insert(key.to_owned(), value);
            }
        }
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
        let Some(journal) = &mut self.journal else {
            return Ok(());
        };
        // One write per line: a crash leaves whole lines and at most one
        // torn last line.
        journal
            .file
            .write_all(journal_line(key, value).as_bytes())?;
        journal.lines += 1;
        let keys = self.entries.len() + 1;
        if journal.lines > COMPACT_AFTER.max(2 * keys) {
            // `key` is not in `entries` yet: compact what it will be.
            let mut after = self.entries.clone();
            after.insert(key.to_owned(), value.to_owned());
            // The change itself is written: a failed compaction only leaves
            // the journal longer.
            match Journal::compact(&journal.path, &after) {
                Ok(compacted) => *journal = compacted,
                Err(e) => tracing::warn!(error = %e, "cannot compact the state journal"),
            }
        }
        Ok(())
    }
}

impl Journal {
    /// Rewrites the file at `path` as one line per entry (a temporary file
    /// renamed into place, so a crash leaves the old or the new file, whole)
    /// and opens it for appending.
    fn compact(path: &Path, entries: &HashMap<String, String>) -> std::io::Result<Journal> {
        let compacted = path.with_extension("compacting");
        let mut out = String::new();
        for (key, value) in entries {
            out.push_str(&journal_line(key, value));
        }
        std::fs::write(&compacted, out)?;
        std::fs::rename(&compacted, path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Journal {
            path: path.to_owned(),
            file,
            lines: entries.len(),
        })
    }
}

/// The entries a journal file holds; none when it does not exist.
fn replay(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let shown = path.display();
    let mut entries = HashMap::new();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entries),
        Err(e) => return Err(e).with_context(|| format!("cannot read state file {shown}")),
    };
    let count = text.lines().count();
    for (n, line) in text.lines().enumerate() {
        // A crash can cut the last line short; anything else broken means
        // the file is not ours.
        match serde_json::from_str::<Change>(line) {
            Ok(change) => {
                entries.insert(change.key.into_owned(), change.value.into_owned());
            }
            Err(_) if n + 1 == count => {
                tracing::warn!(file = %shown, "ignoring a torn last line");
            }
            Err(e) => anyhow::bail!("state file {shown}, line {}: {e}", n + 1),
        }
    }
    Ok(entries)
}

/// At most this many records past a limit are named one by one; the rest
/// are counted, so a journal of many cannot flood the log.
const NAMED_PAST_LIMITS: usize = 10;

/// What of `entries` is past `limits`, each saying which record and which
/// limit (by its flag); the records in key order.
fn past_limits(entries: &HashMap<String, String>, limits: &StateLimits) -> Vec<String> {
    let mut found = Vec::new();
    if entries.len() > limits.max_keys {
        found.push(format!(
            "{} keys, more than --state-max-keys {}",
            entries.len(),
            limits.max_keys
        ));
    }
    let mut keys: Vec<&String> = entries.keys().collect();
    keys.sort_unstable();
    let mut records =
        keys.into_iter()
            .filter_map(|key| match limits.oversize(key, &entries[key])? {
                Oversize::Key(bytes) => Some(format!(
                    "key {} of {bytes} bytes, more than --state-max-key {}",
                    shown(key),
                    limits.max_key_bytes
                )),
                Oversize::Value(bytes) => Some(format!(
                    "the value of key {} of {bytes} bytes, more than --state-max-value {}",
                    shown(key),
                    limits.max_value_bytes
                )),
            });
    found.extend(records.by_ref().take(NAMED_PAST_LIMITS));
    let more = records.count();
    if more > 0 {
        found.push(format!(
            "{more} more records past --state-max-key or --state-max-value"
        ));
    }
    found
}

/// A key as a log line names it: quoted, and cut short when long.
fn shown(key: &str) -> String {
    const LONGEST: usize = 64;
    match key.char_indices().nth(LONGEST) {
        Some((cut, _)) => format!("{:?}...", &key[..cut]),
        None => format!("{key:?}"),
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
    use std::collections::HashMap;

    use super::{COMPACT_AFTER, KvStore, StateLimits, past_limits};

    #[test]
    fn records_past_lowered_limits_are_named_and_kept() {
        let dir = std::env::temp_dir().join(format!("sparrow-kv-l-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.jsonl");
        let _ = std::fs::remove_file(&path);
        {
            let before = StateLimits {
                max_value_bytes: 1 << 20,
                ..StateLimits::default()
            };
            let kv = KvStore::open(&path, before).unwrap();
            for n in 0..20 {
                kv.set(format!("k{n:02}"), "v".into()).unwrap();
            }
            kv.set("big".into(), "x".repeat(100_000)).unwrap();
        }
        let lowered = StateLimits {
            max_keys: 5,
            ..StateLimits::default()
        };
        let kv = KvStore::open(&path, lowered).unwrap();
        assert_eq!(kv.get("k19").as_deref(), Some("v"));
        assert_eq!(kv.get("big").map(|v| v.len()), Some(100_000));
        // No new key past the count; a kept one still changes.
        assert!(kv.set("new".into(), "v".into()).is_err());
        assert!(kv.set("k01".into(), "w".into()).is_ok());
        drop(kv);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines >= 21, "{lines} lines");
        let _ = std::fs::remove_dir_all(&dir);

        let entries: HashMap<String, String> = (0..20)
            .map(|n| (format!("k{n:02}"), "v".to_owned()))
            .chain([("big".to_owned(), "x".repeat(100_000))])
            .collect();
        let short_keys = StateLimits {
            max_key_bytes: 2,
            ..lowered
        };
        let found = past_limits(&entries, &short_keys);
        assert_eq!(found[0], "21 keys, more than --state-max-keys 5");
        assert_eq!(
            found[1],
            "key \"big\" of 3 bytes, more than --state-max-key 2"
        );
        assert_eq!(found.len(), 12, "{found:?}");
        assert_eq!(
            found[11],
            "11 more records past --state-max-key or --state-max-value"
        );
        let value = past_limits(&entries, &StateLimits::default());
        assert_eq!(
            value,
            ["the value of key \"big\" of 100000 bytes, more than --state-max-value 65536"]
        );
    }

    #[test]
    fn increment_counts_and_refuses_text() {
        let kv = KvStore::default();
        assert_eq!(kv.increment("n", 1), Ok(1));
        assert_eq!(kv.increment("n", 41), Ok(42));
        kv.set("t".into(), "abc".into()).unwrap();
        assert!(kv.increment("t", 1).is_err());
        kv.set("max".into(), i64::MAX.to_string()).unwrap();
        assert!(kv.increment("max", 1).is_err());
    }

    #[test]
    fn a_journal_survives_reopening_and_a_torn_last_line() {
        let dir = std::env::temp_dir().join(format!("sparrow-kv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.jsonl");
        let _ = std::fs::remove_file(&path);
        {
            let kv = KvStore::open(&path, StateLimits::default()).unwrap();
            assert_eq!(kv.increment("visits", 1), Ok(1));
            assert_eq!(kv.increment("visits", 1), Ok(2));
            kv.set("name".into(), "line\nbreak".into()).unwrap();
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"key\":\"vis"))
            .unwrap();
        let kv = KvStore::open(&path, StateLimits::default()).unwrap();
        assert_eq!(kv.increment("visits", 1), Ok(3));
        assert_eq!(kv.get("name").as_deref(), Some("line\nbreak"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn keys_values_and_their_number_are_bounded() {
        let kv = KvStore::in_memory(StateLimits {
            max_keys: 2,
            max_key_bytes: 4,
            max_value_bytes: 3,
        });
        assert!(kv.set("a".into(), "123".into()).is_ok());
        assert!(
            kv.set("a".into(), "1234".into())
                .unwrap_err()
                .contains("at most 3")
        );
        assert!(
            kv.set("abcde".into(), "1".into())
                .unwrap_err()
                .contains("at most 4")
        );
        assert_eq!(kv.increment("b", 1), Ok(1));
        assert!(
            kv.set("c".into(), "1".into())
                .unwrap_err()
                .contains("at most 2")
        );
        assert!(kv.increment("b", 998).is_ok());
        assert!(kv.increment("b", 1).unwrap_err().contains("at most 3"));
        assert_eq!(kv.get("b").as_deref(), Some("999"));
    }

    #[test]
    fn the_journal_is_compacted_while_the_host_runs() {
        let dir = std::env::temp_dir().join(format!("sparrow-kv-c-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.jsonl");
        let _ = std::fs::remove_file(&path);
        let kv = KvStore::open(&path, StateLimits::default()).unwrap();
        for n in 1..=(10 * COMPACT_AFTER as i64) {
            assert_eq!(kv.increment("visits", 1), Ok(n));
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= COMPACT_AFTER + 1, "{lines} lines");
        drop(kv);
        let kv = KvStore::open(&path, StateLimits::default()).unwrap();
        assert_eq!(kv.get("visits"), Some((10 * COMPACT_AFTER).to_string()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

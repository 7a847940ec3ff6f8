//! The key-value state the host keeps for its plugin (WIT `state`).
//!
//! It lives in the host, not in the plugin, because every request runs in a
//! fresh instance: this is where a counter survives requests and swaps.

use std::collections::HashMap;
use std::sync::Mutex;

/// Text keys to text values, shared by every request of this host.
#[derive(Debug, Default)]
pub struct KvStore {
    entries: Mutex<HashMap<String, String>>,
}

impl KvStore {
    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().get(key).cloned()
    }

    pub fn set(&self, key: String, value: String) {
        self.lock().insert(key, value);
    }

    /// Adds `delta` to the integer at `key` (0 when unset) under one lock, so
    /// concurrent increments are never lost or repeated.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, String> {
        let mut entries = self.lock();
        let current = match entries.get(key) {
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| format!("value of '{key}' is not an integer"))?,
            None => 0,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| format!("incrementing '{key}' overflows"))?;
        entries.insert(key.to_owned(), next.to_string());
        Ok(next)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A panic while holding this lock cannot leave the map half-written
        // (every update is one insert), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
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
}

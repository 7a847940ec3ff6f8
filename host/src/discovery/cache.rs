//! The client-side cache of the instances of the services a service requires:
//! filled from the registration answer, kept current by the registry's
//! notifications, and asked for one instance at random (the original's
//! load balancing).
//!
//! A registration answer only adds: an instance leaves the cache by a
//! `DELETE` notification, by refusing a connection, or by failing a call
//! when the registry no longer lists it (`Outbound`), never because an
//! answer lacks it. A registry restarted with an empty table (or a replica
//! behind the others) answers with less than the truth, and the callers
//! would otherwise lose instances that are alive and answer 503 until every
//! service registered again.
//!
//! Until the first registration answer the cache knows nothing, yet the
//! service already takes requests (callers may hear of it from the registry
//! before it reads its answer): a call then waits for that answer
//! ([`InstanceCache::filled`]) rather than failing for want of an instance.

use std::sync::RwLock;

use rand::seq::IndexedRandom;
use tokio::sync::watch;

use protocol::locks::{read, write};
use protocol::record::{Instances, ServiceRecord};

/// A new instance past the cache's bound.
#[derive(Debug, thiserror::Error)]
#[error("this service knows {0} instances already, its most (--max-known-instances)")]
pub struct CacheFull(pub usize);

/// Shared by reference (put it in an `Arc`); the lock is only held for map
/// operations, never across an await.
#[derive(Debug)]
pub struct InstanceCache {
    instances: RwLock<Instances>,
    /// Whether a registration answer was merged yet.
    filled: watch::Sender<bool>,
    /// The most instances held: notifications come from whoever can
    /// reach the host (unless `--token` is set), and each new address
    /// would otherwise take memory for good.
    max: usize,
}

impl InstanceCache {
    /// A cache of at most `max` instances (`--max-known-instances`).
    pub fn with_max(max: usize) -> Self {
        InstanceCache {
            instances: RwLock::default(),
            filled: watch::Sender::new(false),
            max,
        }
    }

    /// Returns once a registration answer was merged.
    pub async fn filled(&self) {
        // The sender lives as long as `self`: the wait cannot fail.
        let _ = self.filled.subscribe().wait_for(|filled| *filled).await;
    }

    /// Adds every instance of a registration answer (see the module doc:
    /// nothing is removed).
    pub fn merge(&self, instances: Instances) {
        self.merge_instances(instances);
        self.filled.send_replace(true);
    }

    fn merge_instances(&self, instances: Instances) {
        let mut known = write(&self.instances);
        let mut held = count(&known);
        let mut left_out = 0;
        for record in instances.into_values().flatten() {
            if upsert(&mut known, record, self.max, &mut held).is_err() {
                left_out += 1;
            }
        }
        if left_out > 0 {
            tracing::warn!(left_out, "{}", CacheFull(self.max));
        }
    }

    /// Forgets the services `keep` says no: a new plugin version that no
    /// longer requires them.
    pub fn retain_services(&self, keep: impl Fn(&str) -> bool) {
        write(&self.instances).retain(|name, _| keep(name));
    }

    /// Adds an instance, or updates it if (`Name`, `Addr`) is already known;
    /// a new one past the bound is refused.
    pub fn add(&self, record: ServiceRecord) -> Result<(), CacheFull> {
        let mut known = write(&self.instances);
        let mut held = count(&known);
        upsert(&mut known, record, self.max, &mut held)
    }

    /// Removes the instance with the same (`Name`, `Addr`), if any.
    pub fn remove(&self, record: &ServiceRecord) {
        let mut instances = write(&self.instances);
        if let Some(list) = instances.get_mut(&record.name) {
            list.retain(|r| !r.same_instance(record));
            if list.is_empty() {
                instances.remove(&record.name);
            }
        }
    }

    /// Whether any instance of `name` is known.
    pub fn knows(&self, name: &str) -> bool {
        read(&self.instances).contains_key(name)
    }

    /// The `Addr` of a random instance of `name`.
    pub fn pick(&self, name: &str) -> Option<String> {
        self.pick_excluding(name, &[])
    }

    /// The `Addr` of a random instance of `name` whose address is not in
    /// `exclude` (e.g. those that already failed for this request).
    pub fn pick_excluding(&self, name: &str, exclude: &[String]) -> Option<String> {
        let instances = read(&self.instances);
        let candidates: Vec<&str> = instances
            .get(name)?
            .iter()
            .map(|r| r.addr.as_str())
            .filter(|addr| !exclude.iter().any(|e| e == addr))
            .collect();
        candidates
            .choose(&mut rand::rng())
            .map(|addr| addr.to_string())
    }

    #[cfg(test)]
    pub fn instances(&self, name: &str) -> Vec<ServiceRecord> {
        read(&self.instances).get(name).cloned().unwrap_or_default()
    }

    #[cfg(test)]
    pub fn snapshot(&self) -> Instances {
        read(&self.instances).clone()
    }
}

/// How many instances `known` holds.
fn count(known: &Instances) -> usize {
    known.values().map(Vec::len).sum()
}

/// Adds `record` to `known`, which holds `held` instances (counted once
/// for a whole answer, and kept up to date here), or updates it if
/// (`Name`, `Addr`) is there; refuses a new instance when `held` is `max`.
fn upsert(
    known: &mut Instances,
    record: ServiceRecord,
    max: usize,
    held: &mut usize,
) -> Result<(), CacheFull> {
    if let Some(same) = known
        .get_mut(&record.name)
        .and_then(|list| list.iter_mut().find(|r| r.same_instance(&record)))
    {
        *same = record;
        return Ok(());
    }
    if *held >= max {
        return Err(CacheFull(max));
    }
    known.entry(record.name.clone()).or_default().push(record);
    *held += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn past_its_bound_a_new_instance_is_refused_a_known_one_updated() {
        let cache = InstanceCache::with_max(2);
        cache.add(log("h:1")).unwrap();
        cache.add(log("h:2")).unwrap();
        assert!(cache.add(log("h:3")).is_err());
        cache
            .add(ServiceRecord::new("log", "h:1", vec!["x".into()]))
            .unwrap();
        cache.merge(Instances::from([("visit".to_owned(), vec![log("h:4")])]));
        assert_eq!(count(&cache.snapshot()), 2);
        cache.remove(&log("h:2"));
        cache.add(log("h:3")).unwrap();
    }

    fn log(addr: &str) -> ServiceRecord {
        ServiceRecord::new("log", addr, vec![])
    }

    #[test]
    fn upserts_and_removes_by_name_and_addr() {
        let cache = InstanceCache::with_max(100);
        cache.add(log("h:1")).unwrap();
        cache
            .add(ServiceRecord::new("log", "h:1", vec!["x".into()]))
            .unwrap();
        cache.add(log("h:2")).unwrap();
        assert_eq!(cache.instances("log").len(), 2);
        assert_eq!(cache.instances("log")[0].required_services, vec!["x"]);
        cache.remove(&log("h:1"));
        cache.remove(&ServiceRecord::new("other", "h:2", vec![]));
        assert_eq!(cache.instances("log"), vec![log("h:2")]);
        cache.remove(&log("h:2"));
        assert!(cache.snapshot().is_empty());
    }

    #[test]
    fn an_answer_adds_and_never_removes() {
        let cache = InstanceCache::with_max(100);
        cache.add(log("h:1")).unwrap();
        cache
            .add(ServiceRecord::new("visit", "h:9", vec![]))
            .unwrap();
        // A registry that restarted knows only h:2 so far, and no visit.
        cache.merge(Instances::from([
            ("log".to_string(), vec![log("h:2")]),
            ("visit".to_string(), vec![]),
        ]));
        assert_eq!(cache.instances("log"), vec![log("h:1"), log("h:2")]);
        assert_eq!(cache.instances("visit").len(), 1);
        cache.retain_services(|name| name == "log");
        assert!(cache.instances("visit").is_empty());
        assert_eq!(cache.instances("log").len(), 2);
    }

    #[test]
    fn picks_every_instance_at_random() {
        let cache = InstanceCache::with_max(100);
        cache.merge(Instances::from([(
            "log".to_string(),
            vec![log("h:1"), log("h:2"), log("h:3")],
        )]));
        let seen: HashSet<String> = (0..200).filter_map(|_| cache.pick("log")).collect();
        assert_eq!(seen.len(), 3);
        assert_eq!(cache.pick("visit"), None);
        let excluded = ["h:1".to_string(), "h:2".to_string()];
        assert_eq!(
            cache.pick_excluding("log", &excluded).as_deref(),
            Some("h:3")
        );
        let all = ["h:1", "h:2", "h:3"].map(String::from);
        assert_eq!(cache.pick_excluding("log", &all), None);
    }
}

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

/// Shared by reference (put it in an `Arc`); the lock is only held for map
/// operations, never across an await.
#[derive(Debug)]
pub struct InstanceCache {
    instances: RwLock<Instances>,
    /// Whether a registration answer was merged yet.
    filled: watch::Sender<bool>,
}

impl Default for InstanceCache {
    fn default() -> Self {
        InstanceCache {
            instances: RwLock::default(),
            filled: watch::Sender::new(false),
        }
    }
}

impl InstanceCache {
    pub fn new() -> Self {
        Self::default()
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
        for (name, records) in instances {
            let list = known.entry(name).or_default();
            for record in records {
                match list.iter_mut().find(|r| r.same_instance(&record)) {
                    Some(same) => *same = record,
                    None => list.push(record),
                }
            }
        }
        known.retain(|_, list| !list.is_empty());
    }

    /// Forgets the services `keep` says no: a new plugin version that no
    /// longer requires them.
    pub fn retain_services(&self, keep: impl Fn(&str) -> bool) {
        write(&self.instances).retain(|name, _| keep(name));
    }

    /// Adds an instance, or updates it if (`Name`, `Addr`) is already known.
    pub fn add(&self, record: ServiceRecord) {
        let mut instances = write(&self.instances);
        let list = instances.entry(record.name.clone()).or_default();
        match list.iter_mut().find(|r| r.same_instance(&record)) {
            Some(known) => *known = record,
            None => list.push(record),
        }
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn log(addr: &str) -> ServiceRecord {
        ServiceRecord::new("log", addr, vec![])
    }

    #[test]
    fn upserts_and_removes_by_name_and_addr() {
        let cache = InstanceCache::new();
        cache.add(log("h:1"));
        cache.add(ServiceRecord::new("log", "h:1", vec!["x".into()]));
        cache.add(log("h:2"));
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
        let cache = InstanceCache::new();
        cache.add(log("h:1"));
        cache.add(ServiceRecord::new("visit", "h:9", vec![]));
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
        let cache = InstanceCache::new();
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

//! The registration table: every registered instance with its health.
//!
//! Every method takes the lock for a few map operations and returns owned
//! data, so nothing can hold the lock across I/O: callers notify and probe
//! after the method has returned.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use protocol::locks::{read, write};
use protocol::record::{EVERY_SERVICE, Instances, ServiceRecord};

/// Identifies one registration of an instance. Registering the same
/// (`Name`, `Addr`) again gives a new id, so that a heartbeat that started
/// before the re-registration cannot evict the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistrationId(u64);

/// What the heartbeat knows about an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Registered, not heart-beaten yet.
    Unchecked,
    /// The last attempt succeeded.
    Passing,
    /// The last attempt failed; more attempts follow before eviction.
    Failing,
}

/// An instance for the heartbeat to check.
#[derive(Clone, Debug)]
pub struct Target {
    pub id: RegistrationId,
    pub name: String,
    pub addr: String,
}

/// A registration or removal, with the addresses to notify of it.
#[derive(Clone, Debug)]
pub struct Change {
    pub record: ServiceRecord,
    pub dependents: Vec<String>,
}

/// The result of a registration.
#[derive(Debug)]
pub struct Registered {
    /// The instances of every service the new record requires.
    pub answer: Instances,
    pub change: Change,
    /// Whether (`Name`, `Addr`) was registered already.
    pub updated: bool,
}

/// One instance as `GET /services` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceView {
    #[serde(flatten)]
    pub record: ServiceRecord,
    pub health: Health,
    /// Milliseconds since the Unix epoch of the last successful heartbeat;
    /// `null` before the first one.
    pub last_heartbeat_unix_ms: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Table {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    services: BTreeMap<String, Vec<Entry>>,
    next_id: u64,
}

#[derive(Debug)]
struct Entry {
    record: ServiceRecord,
    id: RegistrationId,
    health: Health,
    last_heartbeat: Option<SystemTime>,
}

impl Table {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `record`, or replaces the registration with the same
    /// (`Name`, `Addr`).
    pub fn register(&self, record: ServiceRecord) -> Registered {
        let mut inner = write(&self.inner);
        inner.next_id += 1;
        let id = RegistrationId(inner.next_id);
        let list = inner.services.entry(record.name.clone()).or_default();
        let known = list.iter_mut().find(|e| e.record.same_instance(&record));
        let updated = known.is_some();
        match known {
            Some(entry) => {
                entry.record = record.clone();
                entry.id = id;
                entry.health = Health::Unchecked;
            }
            None => list.push(Entry {
                record: record.clone(),
                id,
                health: Health::Unchecked,
                last_heartbeat: None,
            }),
        }
        Registered {
            answer: inner.answer(&record),
            change: inner.change(record),
            updated,
        }
    }

    /// Removes the instance with the same (`Name`, `Addr`) as `record`;
    /// `None` if there was none.
    pub fn deregister(&self, record: &ServiceRecord) -> Option<Change> {
        write(&self.inner).remove(&record.name, |e| e.record.addr == record.addr)
    }

    /// Removes the instance if it is still the registration the heartbeat
    /// checked.
    pub fn evict(&self, target: &Target) -> Option<Change> {
        write(&self.inner).remove(&target.name, |e| e.id == target.id)
    }

    /// Every registered instance, for one heartbeat sweep.
    pub fn targets(&self) -> Vec<Target> {
        read(&self.inner)
            .entries()
            .map(|e| Target {
                id: e.id,
                name: e.record.name.clone(),
                addr: e.record.addr.clone(),
            })
            .collect()
    }

    /// Records the outcome of one heartbeat attempt.
    pub fn record_heartbeat(&self, target: &Target, alive: bool) {
        let mut inner = write(&self.inner);
        let Some(entry) = inner
            .services
            .get_mut(&target.name)
            .and_then(|list| list.iter_mut().find(|e| e.id == target.id))
        else {
            return;
        };
        if alive {
            entry.health = Health::Passing;
            entry.last_heartbeat = Some(SystemTime::now());
        } else {
            entry.health = Health::Failing;
        }
    }

    /// Every service with its instances.
    pub fn view(&self) -> BTreeMap<String, Vec<InstanceView>> {
        read(&self.inner)
            .services
            .iter()
            .map(|(name, list)| (name.clone(), list.iter().map(Entry::view).collect()))
            .collect()
    }

    /// The instances of one service; `None` if it has none.
    pub fn view_service(&self, name: &str) -> Option<Vec<InstanceView>> {
        read(&self.inner)
            .services
            .get(name)
            .map(|list| list.iter().map(Entry::view).collect())
    }
}

impl Inner {
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.services.values().flatten()
    }

    fn remove(&mut self, name: &str, matches: impl Fn(&Entry) -> bool) -> Option<Change> {
        let list = self.services.get_mut(name)?;
        let index = list.iter().position(matches)?;
        let removed = list.remove(index);
        if list.is_empty() {
            self.services.remove(name);
        }
        Some(self.change(removed.record))
    }

    /// Who to notify about `record`: the address of every other instance that
    /// requires its service, each address once.
    fn change(&self, record: ServiceRecord) -> Change {
        let dependents: BTreeSet<&str> = self
            .entries()
            .filter(|e| e.record.requires(&record.name) && !e.record.same_instance(&record))
            .map(|e| e.record.addr.as_str())
            .collect();
        Change {
            dependents: dependents.into_iter().map(str::to_owned).collect(),
            record,
        }
    }

    /// The registration answer for `record`: every required service mapped to
    /// its instances (`[]` when there is none; every service for `*`), leaving
    /// out `record` itself.
    fn answer(&self, record: &ServiceRecord) -> Instances {
        let instances_of = |list: &[Entry]| -> Vec<ServiceRecord> {
            list.iter()
                .filter(|e| !e.record.same_instance(record))
                .map(|e| e.record.clone())
                .collect()
        };
        let mut answer = Instances::new();
        for required in &record.required_services {
            if required == EVERY_SERVICE {
                for (name, list) in &self.services {
                    let others = instances_of(list);
                    if !others.is_empty() {
                        answer.insert(name.clone(), others);
                    }
                }
            } else {
                let list = self.services.get(required).map_or(&[][..], Vec::as_slice);
                answer.insert(required.clone(), instances_of(list));
            }
        }
        answer
    }
}

impl Entry {
    fn view(&self) -> InstanceView {
        InstanceView {
            record: self.record.clone(),
            health: self.health,
            last_heartbeat_unix_ms: self.last_heartbeat.map(unix_ms),
        }
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, addr: &str, required: &[&str]) -> ServiceRecord {
        ServiceRecord::new(name, addr, required.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn answers_required_services_and_notifies_dependents() {
        let table = Table::new();
        let visit = record("visit", "h:3", &["log"]);
        let first = table.register(visit.clone());
        assert_eq!(first.answer, Instances::from([("log".into(), vec![])]));
        assert!(first.change.dependents.is_empty());

        let log = record("log", "h:2", &[]);
        let second = table.register(log.clone());
        assert_eq!(second.change.dependents, vec!["h:3"]);
        assert!(second.answer.is_empty());
        assert!(!second.updated);

        let again = table.register(visit.clone());
        assert!(again.updated);
        assert_eq!(again.answer["log"], vec![log.clone()]);
        assert_eq!(table.view()["visit"].len(), 1);

        let removed = table.deregister(&log).unwrap();
        assert_eq!(removed.dependents, vec!["h:3"]);
        assert!(table.deregister(&log).is_none());
    }

    #[test]
    fn wildcard_sees_every_service_but_itself() {
        let table = Table::new();
        table.register(record("log", "h:2", &[]));
        let gateway = record("gateway", "h:1", &["*"]);
        let registered = table.register(gateway);
        assert_eq!(registered.answer.keys().collect::<Vec<_>>(), ["log"]);
        let visit = table.register(record("visit", "h:3", &[]));
        assert_eq!(visit.change.dependents, vec!["h:1"]);
    }

    #[test]
    fn eviction_spares_a_re_registered_instance() {
        let table = Table::new();
        let log = record("log", "h:2", &[]);
        table.register(log.clone());
        let target = table.targets().pop().unwrap();
        table.record_heartbeat(&target, false);
        assert_eq!(table.view()["log"][0].health, Health::Failing);
        table.register(log.clone());
        assert!(table.evict(&target).is_none());
        let fresh = table.targets().pop().unwrap();
        table.record_heartbeat(&fresh, true);
        let view = &table.view()["log"][0];
        assert_eq!(view.health, Health::Passing);
        assert!(view.last_heartbeat_unix_ms.is_some());
        assert!(table.evict(&fresh).is_some());
        assert!(table.view().is_empty());
    }
}

//! The registration table: every registered instance with its health, and
//! who depends on whom. The in-memory store keeps the truth in one; the etcd
//! store keeps a copy in one, fed by its watch.
//!
//! The table is bounded ([`Limits`]): by `--max-instances`, and by
//! [`TABLE_BUDGET`] bytes of records as a registration answer writes them,
//! so that any answer, `*` included, fits in what a host reads of it
//! ([`MAX_ANSWER`]). A registration past either bound is refused and
//! stores nothing.
//!
//! Every method takes the lock for a few map operations and returns owned
//! data, so nothing can hold the lock across I/O. A change queues its
//! notifications while the lock is held (queueing never waits), which is
//! what keeps them in the order of the changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use http::Method;
use serde::Serialize;

use super::roster::Roster;
use crate::notify::Notifier;
use protocol::http::MAX_ANSWER;
use protocol::locks::{read, write};
use protocol::record::{EVERY_SERVICE, Instances, MAX_REQUIRED, MAX_REQUIRED_BYTES, ServiceRecord};

/// What an answer may hold besides the records of the table: its braces,
/// and an empty list for each service the registering record requires
/// that has no instance (each name escaped to twice its length at most,
/// with its quotes, `:[]` and a comma).
const ANSWER_HEADROOM: usize = 1 << 20;
const _: () = assert!(ANSWER_HEADROOM >= 2 + 2 * MAX_REQUIRED_BYTES + 7 * MAX_REQUIRED);

/// The most bytes the table's records may take, each [`cost`]ed as in an
/// answer listing every service: so that any registration answer fits in
/// the [`MAX_ANSWER`] bytes a host reads of it.
pub const TABLE_BUDGET: usize = MAX_ANSWER - ANSWER_HEADROOM;

/// What the table may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Instances (`--max-instances`).
    pub instances: usize,
    /// Bytes of records, [`cost`]ed ([`TABLE_BUDGET`]; lower in tests).
    pub bytes: usize,
}

/// Why a registration was refused: the table is full.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error("the registry's table is full: it holds {0} instances, its --max-instances")]
    Instances(usize),
    #[error(
        "the registry's table is full: its records would take {needed} bytes, more than its \
         {budget} (registration answers must fit in the {MAX_ANSWER} bytes a host reads)"
    )]
    Bytes { needed: usize, budget: usize },
}

/// What a record takes in an answer listing every service: itself and a
/// comma, and (as if it were its service's only instance) its service's
/// name, `:[`, `]` and a comma. Summed over the table, more than the
/// records and names of any registration answer take.
pub fn cost(record: &ServiceRecord) -> usize {
    json_len(record) + json_len(&record.name) + 5
}

fn json_len(value: &impl Serialize) -> usize {
    // Strings and lists of strings: writing them cannot fail.
    serde_json::to_vec(value).map_or(0, |json| json.len())
}

/// Identifies one registration of an instance. Registering the same
/// (`Name`, `Addr`) again gives a new id, so that a heartbeat that started
/// before the re-registration cannot evict the new one. Unique per
/// instance only: on etcd it is the key's mod revision, which every
/// registration of one transaction shares (see `store/etcd/commit.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistrationId(pub u64);

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

/// An instance for the heartbeat to check: one registration of one
/// instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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

/// The result of [`Table::upsert`].
#[derive(Debug)]
pub struct Upserted {
    /// The instances of every service the new record requires, when asked.
    pub answer: Option<Instances>,
    /// Whether (`Name`, `Addr`) was registered already.
    pub updated: bool,
    /// The dependents told of it (for the tests).
    #[cfg(test)]
    pub notified: Vec<String>,
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

/// The table, and the notifier that hears of every change to it.
pub struct Table {
    inner: RwLock<Inner>,
    notifier: Notifier,
    limits: Limits,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each service's instances by `Addr`, in the order they first
    /// registered (answers list them so, as the original does).
    services: BTreeMap<String, Roster<Entry>>,
    /// Who requires each service (`*` for every one), by (`Addr`, `Name`):
    /// a change's dependents without a scan of the table.
    requirers: HashMap<String, BTreeSet<(String, String)>>,
    /// How many instances at each address require some service: whether
    /// anything there still hears of changes.
    requiring: HashMap<String, usize>,
    /// How many entries `services` holds.
    instances: usize,
    /// How many of them failed their latest heartbeat.
    failing: usize,
    /// The sum of their costs.
    bytes: usize,
}

/// What the table's records take against its [`Limits`].
#[derive(Clone, Copy, Debug)]
struct Usage {
    instances: usize,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    record: ServiceRecord,
    /// [`cost`] of the record.
    cost: usize,
    id: RegistrationId,
    health: Health,
    last_heartbeat: Option<SystemTime>,
}

impl Table {
    /// An empty table whose changes are told to dependents through
    /// `notifier`, and whose registrations must stay within `limits`.
    pub fn new(notifier: Notifier, limits: Limits) -> Self {
        Table {
            inner: RwLock::default(),
            notifier,
            limits,
        }
    }

    /// Registers `record` as registration `id` if the table has room for it
    /// (see [`Table::admits_together`]): [`Table::upsert`], with the answer.
    pub fn register(&self, record: ServiceRecord, id: RegistrationId) -> Result<Upserted, Full> {
        let mut inner = write(&self.inner);
        inner.admits(inner.usage(), &record, &self.limits)?;
        Ok(self.upsert_locked(&mut inner, record, id, true))
    }

    /// Which of `records` the table has room for, all together: each is
    /// checked as one more instance or in place of its known registration,
    /// with those admitted before it counted in. The records are of
    /// distinct instances (one transaction cannot write a key twice).
    pub fn admits_together<'r>(
        &self,
        records: impl IntoIterator<Item = &'r ServiceRecord>,
    ) -> Vec<Result<(), Full>> {
        let inner = read(&self.inner);
        let mut usage = inner.usage();
        records
            .into_iter()
            .map(|record| {
                usage = inner.admits(usage, record, &self.limits)?;
                Ok(())
            })
            .collect()
    }

    /// Adds `record` as registration `id`, or replaces the registration with
    /// the same (`Name`, `Addr`), and queues the `POST` for its dependents,
    /// whatever the limits (a copy holds what etcd holds). With `answer`,
    /// also says what a registration answers: the instances of every
    /// service the record requires, as of this change.
    ///
    /// The notification is queued before the lock is released: two changes
    /// of the same instance are queued in the order they were made, so its
    /// dependents cannot hear them swapped.
    pub fn upsert(&self, record: ServiceRecord, id: RegistrationId, answer: bool) -> Upserted {
        self.upsert_locked(&mut write(&self.inner), record, id, answer)
    }

    fn upsert_locked(
        &self,
        inner: &mut Inner,
        record: ServiceRecord,
        id: RegistrationId,
        answer: bool,
    ) -> Upserted {
        let updated = inner.put(&record, id);
        let answer = answer.then(|| inner.answer(&record));
        let change = inner.change(record);
        #[cfg(test)]
        let notified = change.dependents.clone();
        self.notifier.notify(Method::POST, change);
        Upserted {
            answer,
            updated,
            #[cfg(test)]
            notified,
        }
    }

    /// Removes the instance (`name`, `addr`) and queues the `DELETE` for its
    /// dependents; false if there was none.
    pub fn remove(&self, name: &str, addr: &str) -> bool {
        let mut inner = write(&self.inner);
        let change = inner.remove(name, addr, |_| true);
        self.left(&inner, change.as_ref());
        self.tell(Method::DELETE, change)
    }

    /// Removes the instance if it is still the registration the heartbeat
    /// checked, and queues the `DELETE`; false if it was not.
    pub fn evict(&self, target: &Target) -> bool {
        let mut inner = write(&self.inner);
        let change = inner.remove(&target.name, &target.addr, |e| e.id == target.id);
        self.left(&inner, change.as_ref());
        self.tell(Method::DELETE, change)
    }

    /// Makes the table hold exactly `records` (with their registration
    /// ids). With `notify`, each difference is told to dependents as the
    /// `POST` or `DELETE` that would have made it; a re-read of a shared
    /// table after a gap uses this, a first read does not.
    pub fn reset(&self, records: Vec<(ServiceRecord, RegistrationId)>, notify: bool) {
        let mut inner = write(&self.inner);
        let wanted: BTreeSet<(String, String)> = records
            .iter()
            .map(|(r, _)| (r.name.clone(), r.addr.clone()))
            .collect();
        let gone: Vec<(String, String)> = inner
            .entries()
            .map(|e| (e.record.name.clone(), e.record.addr.clone()))
            .filter(|key| !wanted.contains(key))
            .collect();
        for (name, addr) in gone {
            let change = inner.remove(&name, &addr, |_| true);
            self.left(&inner, change.as_ref());
            if notify {
                self.tell(Method::DELETE, change);
            }
        }
        for (record, id) in records {
            if inner.holds(&record, id) {
                continue;
            }
            inner.put(&record, id);
            if notify {
                let change = inner.change(record);
                self.notifier.notify(Method::POST, change);
            }
        }
    }

    /// An instance left the table: if nothing at its address depends on
    /// another service any more, what was queued for that address to hear
    /// is dropped (see `Notifier::forget`).
    fn left(&self, inner: &Inner, removed: Option<&Change>) {
        let Some(Change { record, .. }) = removed else {
            return;
        };
        if !record.required_services.is_empty() && !inner.requiring.contains_key(&record.addr) {
            self.notifier.forget(&record.addr);
        }
    }

    fn tell(&self, method: Method, change: Option<Change>) -> bool {
        match change {
            Some(change) => {
                self.notifier.notify(method, change);
                true
            }
            None => false,
        }
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
            .and_then(|list| list.get_mut(&target.addr))
            .filter(|e| e.id == target.id)
        else {
            return;
        };
        let was_failing = entry.health == Health::Failing;
        if alive {
            entry.health = Health::Passing;
            entry.last_heartbeat = Some(SystemTime::now());
        } else {
            entry.health = Health::Failing;
        }
        match (was_failing, alive) {
            (false, false) => inner.failing += 1,
            (true, true) => inner.failing -= 1,
            _ => {}
        }
    }

    /// How many instances failed their latest heartbeat, and how many the
    /// table holds.
    pub fn failing(&self) -> (usize, usize) {
        let inner = read(&self.inner);
        (inner.failing, inner.instances)
    }

    /// Every service with its instances.
    pub fn view(&self) -> BTreeMap<String, Vec<InstanceView>> {
        read(&self.inner)
            .services
            .iter()
            .map(|(name, list)| (name.clone(), list.values().map(Entry::view).collect()))
            .collect()
    }

    /// The instances of one service; `None` if it has none.
    pub fn view_service(&self, name: &str) -> Option<Vec<InstanceView>> {
        read(&self.inner)
            .services
            .get(name)
            .map(|list| list.values().map(Entry::view).collect())
    }

    /// The view of `found` (records read from the truth, each with its
    /// registration, in the order to list them): each with the health this
    /// table knows of that registration, `unchecked` for one it has not
    /// seen yet.
    pub fn views_of(&self, found: Vec<(ServiceRecord, RegistrationId)>) -> Vec<InstanceView> {
        let inner = read(&self.inner);
        found
            .into_iter()
            .map(|(record, id)| {
                let known = inner
                    .entry(&record.name, &record.addr)
                    .filter(|entry| entry.id == id);
                match known {
                    Some(entry) => entry.view(),
                    None => InstanceView {
                        record,
                        health: Health::Unchecked,
                        last_heartbeat_unix_ms: None,
                    },
                }
            })
            .collect()
    }

    /// How many instances are registered.
    pub fn len(&self) -> usize {
        read(&self.inner).instances
    }
}

impl Inner {
    /// Adds the instance, or replaces the known one with the same (`Name`,
    /// `Addr`), which starts over as unchecked; whether it was known.
    fn put(&mut self, record: &ServiceRecord, id: RegistrationId) -> bool {
        let cost = cost(record);
        let list = self.services.entry(record.name.clone()).or_default();
        let known = list.get_mut(&record.addr);
        if let Some(entry) = &known {
            unindex(&mut self.requirers, &mut self.requiring, &entry.record);
        }
        index(&mut self.requirers, &mut self.requiring, record);
        match known {
            Some(entry) => {
                self.bytes = self.bytes - entry.cost + cost;
                entry.record = record.clone();
                entry.cost = cost;
                entry.id = id;
                if entry.health == Health::Failing {
                    self.failing -= 1;
                }
                entry.health = Health::Unchecked;
                true
            }
            None => {
                let entry = Entry {
                    record: record.clone(),
                    cost,
                    id,
                    health: Health::Unchecked,
                    last_heartbeat: None,
                };
                list.insert(record.addr.clone(), entry);
                self.instances += 1;
                self.bytes += cost;
                false
            }
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            instances: self.instances,
            bytes: self.bytes,
        }
    }

    /// Whether `record` fits within `limits` on top of `usage` (this
    /// table's, or more), in place of its known registration if there is
    /// one; the usage with it.
    fn admits(&self, usage: Usage, record: &ServiceRecord, limits: &Limits) -> Result<Usage, Full> {
        let known = self.entry(&record.name, &record.addr);
        if known.is_none() && usage.instances >= limits.instances {
            return Err(Full::Instances(limits.instances));
        }
        let needed = usage.bytes - known.map_or(0, |e| e.cost) + cost(record);
        if needed > limits.bytes {
            return Err(Full::Bytes {
                needed,
                budget: limits.bytes,
            });
        }
        Ok(Usage {
            instances: usage.instances + usize::from(known.is_none()),
            bytes: needed,
        })
    }

    /// Whether the table holds exactly `record` under registration `id`.
    fn holds(&self, record: &ServiceRecord, id: RegistrationId) -> bool {
        self.entry(&record.name, &record.addr)
            .is_some_and(|e| e.id == id && e.record == *record)
    }

    /// The instance (`name`, `addr`), if the table holds it.
    fn entry(&self, name: &str, addr: &str) -> Option<&Entry> {
        self.services.get(name)?.get(addr)
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.services.values().flat_map(Roster::values)
    }

    /// Removes the instance (`name`, `addr`) if it `matches`.
    fn remove(
        &mut self,
        name: &str,
        addr: &str,
        matches: impl Fn(&Entry) -> bool,
    ) -> Option<Change> {
        let list = self.services.get_mut(name)?;
        if !matches(list.get(addr)?) {
            return None;
        }
        let removed = list.remove(addr)?;
        if list.is_empty() {
            self.services.remove(name);
        }
        unindex(&mut self.requirers, &mut self.requiring, &removed.record);
        self.instances -= 1;
        self.bytes -= removed.cost;
        if removed.health == Health::Failing {
            self.failing -= 1;
        }
        Some(self.change(removed.record))
    }

    /// Who to notify about `record`: the address of every other instance that
    /// requires its service, each address once.
    fn change(&self, record: ServiceRecord) -> Change {
        let dependents: BTreeSet<&str> = [record.name.as_str(), EVERY_SERVICE]
            .iter()
            .filter_map(|service| self.requirers.get(*service))
            .flatten()
            .filter(|(addr, name)| *addr != record.addr || *name != record.name)
            .map(|(addr, _)| addr.as_str())
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
        let instances_of = |list: &Roster<Entry>| -> Vec<ServiceRecord> {
            list.values()
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
                let others = self.services.get(required).map(instances_of);
                answer.insert(required.clone(), others.unwrap_or_default());
            }
        }
        answer
    }
}

/// Adds `record`'s requirements to the indexes of [`Inner`].
fn index(
    requirers: &mut HashMap<String, BTreeSet<(String, String)>>,
    requiring: &mut HashMap<String, usize>,
    record: &ServiceRecord,
) {
    for service in &record.required_services {
        let by = (record.addr.clone(), record.name.clone());
        requirers.entry(service.clone()).or_default().insert(by);
    }
    if !record.required_services.is_empty() {
        *requiring.entry(record.addr.clone()).or_default() += 1;
    }
}

/// Takes `record`'s requirements out of the indexes of [`Inner`].
fn unindex(
    requirers: &mut HashMap<String, BTreeSet<(String, String)>>,
    requiring: &mut HashMap<String, usize>,
    record: &ServiceRecord,
) {
    let by = (record.addr.clone(), record.name.clone());
    for service in &record.required_services {
        if let Some(set) = requirers.get_mut(service) {
            set.remove(&by);
            if set.is_empty() {
                requirers.remove(service);
            }
        }
    }
    if !record.required_services.is_empty()
        && let Some(count) = requiring.get_mut(&record.addr)
    {
        *count -= 1;
        if *count == 0 {
            requiring.remove(&record.addr);
        }
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
    use std::time::Duration;

    use super::*;
    use protocol::http::http_client;
    use protocol::token::Token;

    fn record(name: &str, addr: &str, required: &[&str]) -> ServiceRecord {
        ServiceRecord::new(name, addr, required.iter().map(|s| s.to_string()).collect())
    }

    fn table() -> Table {
        bounded(Limits {
            instances: usize::MAX,
            bytes: TABLE_BUDGET,
        })
    }

    fn bounded(limits: Limits) -> Table {
        let notifier = Notifier::new(
            http_client(),
            Duration::from_millis(10),
            Token::default(),
            16,
            std::sync::Arc::new(crate::metrics::Metrics::new()),
        );
        Table::new(notifier, limits)
    }

    fn id(n: u64) -> RegistrationId {
        RegistrationId(n)
    }

    /// The indexes of who requires what give the dependents, and the
    /// addresses still requiring something, that a scan of the table
    /// finds, and the count of failing instances its scan's, through
    /// registrations, changed requirements, heartbeats and removals.
    #[tokio::test]
    async fn the_indexes_and_counts_agree_with_a_scan_of_the_table() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let table = table();
        let mut rng = StdRng::seed_from_u64(13);
        let (names, addrs) = (["a", "b", "c"], ["127.0.0.1:1", "127.0.0.1:2"]);
        let services = ["a", "b", "c", "*"];
        for step in 0..3000 {
            let name = names[rng.random_range(0..names.len())];
            let addr = addrs[rng.random_range(0..addrs.len())];
            if rng.random_bool(0.3) {
                table.remove(name, addr);
            } else if rng.random_bool(0.4) {
                if let Some(target) = table
                    .targets()
                    .into_iter()
                    .find(|t| t.name == name && t.addr == addr)
                {
                    table.record_heartbeat(&target, rng.random_bool(0.5));
                }
            } else {
                let required: Vec<&str> = services
                    .into_iter()
                    .filter(|_| rng.random_bool(0.3))
                    .collect();
                table.upsert(record(name, addr, &required), id(step), false);
            }
            let inner = read(&table.inner);
            for name in names {
                for addr in addrs {
                    let probe = record(name, addr, &[]);
                    let scanned: BTreeSet<&str> = inner
                        .entries()
                        .filter(|e| e.record.requires(name) && !e.record.same_instance(&probe))
                        .map(|e| e.record.addr.as_str())
                        .collect();
                    let indexed = inner.change(probe).dependents;
                    assert_eq!(indexed, Vec::from_iter(scanned), "step {step}");
                }
            }
            for addr in addrs {
                let requires = inner
                    .entries()
                    .any(|e| e.record.addr == addr && !e.record.required_services.is_empty());
                assert_eq!(inner.requiring.contains_key(addr), requires, "step {step}");
            }
            let failing = inner.entries().filter(|e| e.health == Health::Failing);
            assert_eq!(inner.failing, failing.count(), "step {step}");
        }
    }

    #[tokio::test]
    async fn answers_required_services_and_notifies_dependents() {
        let table = table();
        let visit = record("visit", "h:3", &["log"]);
        let first = table.upsert(visit.clone(), id(1), true);
        assert_eq!(
            first.answer,
            Some(Instances::from([("log".into(), vec![])]))
        );
        assert!(first.notified.is_empty());

        let log = record("log", "h:2", &[]);
        let second = table.upsert(log.clone(), id(2), true);
        assert_eq!(second.notified, vec!["h:3"]);
        assert_eq!(second.answer, Some(Instances::new()));
        assert!(!second.updated);

        let again = table.upsert(visit.clone(), id(3), true);
        assert!(again.updated);
        assert_eq!(again.answer.unwrap()["log"], vec![log.clone()]);
        assert_eq!(table.view()["visit"].len(), 1);

        assert!(table.remove("log", "h:2"));
        assert!(!table.remove("log", "h:2"));
    }

    #[tokio::test]
    async fn wildcard_sees_every_service_but_itself() {
        let table = table();
        table.upsert(record("log", "h:2", &[]), id(1), false);
        let gateway = record("gateway", "h:1", &["*"]);
        let registered = table.upsert(gateway, id(2), true);
        let answer = registered.answer.unwrap();
        assert_eq!(answer.keys().collect::<Vec<_>>(), ["log"]);
        let visit = table.upsert(record("visit", "h:3", &[]), id(3), false);
        assert_eq!(visit.notified, vec!["h:1"]);
    }

    #[tokio::test]
    async fn eviction_spares_a_re_registered_instance() {
        let table = table();
        let log = record("log", "h:2", &[]);
        table.upsert(log.clone(), id(1), false);
        let target = table.targets().pop().unwrap();
        table.record_heartbeat(&target, false);
        assert_eq!(table.view()["log"][0].health, Health::Failing);
        table.upsert(log.clone(), id(2), false);
        assert!(!table.evict(&target));
        let fresh = table.targets().pop().unwrap();
        table.record_heartbeat(&fresh, true);
        let view = &table.view()["log"][0];
        assert_eq!(view.health, Health::Passing);
        assert!(view.last_heartbeat_unix_ms.is_some());
        assert!(table.evict(&fresh));
        assert!(table.view().is_empty());
    }

    #[tokio::test]
    async fn reset_keeps_what_did_not_change() {
        let table = table();
        table.upsert(record("log", "h:1", &[]), id(1), false);
        table.upsert(record("log", "h:2", &[]), id(2), false);
        let target = table
            .targets()
            .into_iter()
            .find(|t| t.addr == "h:1")
            .unwrap();
        table.record_heartbeat(&target, true);
        table.reset(
            vec![
                (record("log", "h:1", &[]), id(1)),
                (record("log", "h:3", &[]), id(3)),
            ],
            true,
        );
        let view = &table.view()["log"];
        let addrs: Vec<&str> = view.iter().map(|v| v.record.addr.as_str()).collect();
        assert_eq!(addrs, ["h:1", "h:3"]);
        assert_eq!(view[0].health, Health::Passing);
        assert_eq!(table.len(), 2);
    }

    #[tokio::test]
    async fn registrations_past_the_limits_are_refused_and_store_nothing() {
        let a = record("a", "h:1", &[]);
        let table = bounded(Limits {
            instances: 2,
            bytes: 2 * cost(&a) + 10,
        });
        table.register(a.clone(), id(1)).unwrap();
        table.register(record("b", "h:1", &[]), id(2)).unwrap();
        let third = table.register(record("c", "h:1", &[]), id(3)).unwrap_err();
        assert_eq!(third, Full::Instances(2));
        assert!(third.to_string().contains("--max-instances"), "{third}");
        // A known instance takes its own place.
        assert!(table.register(a.clone(), id(4)).unwrap().updated);
        // ...unless it grows past the bytes left.
        let grown = record("a", "h:1", &["a-long-name-of-a-service"]);
        assert!(matches!(
            table.register(grown, id(5)),
            Err(Full::Bytes { .. })
        ));
        assert_eq!(table.view()["a"][0].record, a);
        assert_eq!(table.len(), 2);
        assert!(table.remove("b", "h:1"));
        table.register(record("c", "h:1", &[]), id(6)).unwrap();
        assert_eq!(
            table.admits_together([&record("d", "h:1", &[])]),
            [Err(Full::Instances(2))]
        );
    }

    /// A batch is admitted as if its records were registered in turn: each
    /// counts against the next, except those already known.
    #[tokio::test]
    async fn records_admitted_together_count_against_each_other() {
        let table = bounded(Limits {
            instances: 3,
            bytes: usize::MAX,
        });
        table.register(record("a", "h:1", &[]), id(1)).unwrap();
        let batch = [
            record("b", "h:1", &[]),
            record("a", "h:1", &["b"]),
            record("c", "h:1", &[]),
            record("d", "h:1", &[]),
        ];
        assert_eq!(
            table.admits_together(&batch),
            [Ok(()), Ok(()), Ok(()), Err(Full::Instances(3))]
        );
        // Nothing was stored.
        assert_eq!(table.len(), 1);
    }

    /// The bound is what it is for: a `*` answer over a table filled to
    /// its budget with the largest records fits in what a host reads.
    #[tokio::test]
    async fn a_full_table_still_answers_within_what_a_host_reads() {
        use protocol::record::{MAX_NAME, MAX_REQUIRED};
        let table = table();
        // Quotes are escaped: the most bytes a name can take in JSON.
        let quotes = |n: usize| "\"".repeat(n);
        let required: Vec<String> = (0..MAX_REQUIRED_BYTES / MAX_NAME)
            .map(|i| format!("{i}{}", quotes(MAX_NAME - 3)))
            .collect();
        // More than 16 MiB of them, were they all taken.
        let full = (1..=1000).find(|&n| {
            let name = format!("{n}{}", quotes(MAX_NAME - 6));
            let filler = ServiceRecord::new(name, format!("h:{n}"), required.clone());
            assert_eq!(filler.validate(), Ok(()));
            table.register(filler, id(n)).is_err()
        });
        assert!(full.is_some(), "the table never filled");
        // Every required service of a record without instances, too.
        let listing: Vec<String> = (0..MAX_REQUIRED)
            .map(|i| format!("{i}{}", quotes(MAX_REQUIRED_BYTES / MAX_REQUIRED - 3)))
            .chain(["*".to_string()])
            .skip(1)
            .collect();
        let gateway = ServiceRecord::new("gateway", "g:1", listing);
        assert_eq!(gateway.validate(), Ok(()));
        let answer = table.upsert(gateway, id(0), true).answer.unwrap();
        let json = serde_json::to_vec(&answer).unwrap();
        assert!(
            json.len() > MAX_ANSWER - (2 << 20),
            "{} bytes: not full",
            json.len()
        );
        assert!(json.len() <= MAX_ANSWER, "{} bytes", json.len());
    }
}

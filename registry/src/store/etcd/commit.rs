//! Group commit of registrations: one task per replica writes them to etcd,
//! one transaction at a time, each carrying every registration that arrived
//! while the one before was in flight.
//!
//! Why: a registration is checked against the table's bounds on the copy,
//! and made only if no registration was made since the revision the copy
//! reflects (see `etcd.rs`). Sent one transaction per registration, the
//! registrations of one replica failed each other's checks: each success
//! failed every other one in flight, which waited for the watch and tried
//! again, so 32 at once took 32 rounds (300 at once on one replica: 196
//! answered 503 after a 1 s `--etcd-timeout`). In turns, a replica's
//! transactions conflict only with other replicas' registrations.
//!
//! A transaction stays within etcd's request bounds, as
//! `--etcd-max-txn-ops` and `--etcd-max-request-bytes` state them (etcd's
//! defaults, 128 and 1.5 MiB): at most half the operations are
//! registrations, their records take at most the request size less
//! [`REQUEST_ROOM`], and the answers read every instance at once instead
//! of one service at a time when that would pass the operations.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use protocol::record::{EVERY_SERVICE, Instances, ServiceRecord};
use tokio::sync::{mpsc, oneshot, watch};

use super::{EtcdStore, Keys, Registered, StoreError};

/// What a request holds besides the records: the instance keys' prefix
/// and the reads' keys (128 of at most 253-byte names, or fewer), the
/// compare, and the message's framing.
pub const REQUEST_ROOM: usize = 64 << 10;

/// How a replica's registrations share transactions.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Registrations waiting for their turn: as many as the registry serves
    /// connections at once, each with one request at a time, so none waits
    /// for room.
    pub room: usize,
    /// etcd's `--max-txn-ops`.
    pub max_ops: usize,
    /// etcd's `--max-request-bytes`.
    pub max_request_bytes: usize,
}

impl Batching {
    /// Registrations in one transaction: half its operations, the rest for
    /// the `registered` put and the reads.
    fn registrations(&self) -> usize {
        (self.max_ops / 2).max(1)
    }

    /// Bytes of records in one transaction (a larger record goes alone).
    fn bytes(&self) -> usize {
        self.max_request_bytes.saturating_sub(REQUEST_ROOM)
    }
}

/// A registration waiting for its transaction.
pub struct Queued {
    record: ServiceRecord,
    json: Vec<u8>,
    key: String,
    /// `--etcd-timeout` after it arrived: past it, it answers 503.
    deadline: Instant,
    reply: oneshot::Sender<Result<Registered, StoreError>>,
}

impl Queued {
    fn answer(self, result: Result<Registered, StoreError>) {
        // The request may be gone (its client hung up): nothing to tell.
        let _ = self.reply.send(result);
    }
}

/// The registration queue's two ends: the store sends, [`EtcdStore::commit`]
/// receives.
pub fn queue(batching: &Batching) -> (mpsc::Sender<Queued>, mpsc::Receiver<Queued>) {
    mpsc::channel(batching.room.max(1))
}

impl EtcdStore {
    /// Queues `record` for the committing task and waits for its answer.
    pub(super) async fn queue_registration(
        &self,
        record: ServiceRecord,
    ) -> Result<Registered, StoreError> {
        let json = serde_json::to_vec(&record).map_err(super::unavailable)?;
        let key = self.keys.instance(&record.name, &record.addr);
        let deadline = Instant::now() + self.timeout;
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            record,
            json,
            key,
            deadline,
            reply,
        };
        let stopped = || StoreError::Unavailable("the registry is stopping; retry".into());
        if self.registrations.send(queued).await.is_err() {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Writes the queued registrations, in turns, for as long as the task
    /// runs; `queue` is the receiving end of [`queue`].
    pub async fn commit(self: Arc<Self>, mut queue: mpsc::Receiver<Queued>) {
        let mut applied = self.applied.subscribe();
        // Registrations received but left for a later turn.
        let mut waiting = VecDeque::new();
        loop {
            if waiting.is_empty() {
                match queue.recv().await {
                    Some(queued) => waiting.push_back(queued),
                    None => return,
                }
            }
            while waiting.len() < self.batching.registrations() {
                match queue.try_recv() {
                    Ok(queued) => waiting.push_back(queued),
                    Err(_) => break,
                }
            }
            let batch = take_batch(&mut waiting, &self.batching);
            if let Some(revision) = self.commit_batch(batch, &mut applied).await {
                // The next turn checks against a copy that has this one,
                // or it would conflict with it. If the watch does not bring
                // it in time, the next turn waits as after a conflict.
                let caught_up = applied.wait_for(|&now| now >= revision);
                let _ = tokio::time::timeout(self.timeout, caught_up).await;
            }
        }
    }

    /// Writes `batch`, checked against the copy, again after each conflict
    /// until the registrations' deadlines, and answers each registration;
    /// the transaction's revision if it was made.
    async fn commit_batch(
        &self,
        mut batch: Vec<Queued>,
        applied: &mut watch::Receiver<i64>,
    ) -> Option<i64> {
        // The revision the copy must reach before the next check.
        let mut after = 0;
        loop {
            let now = Instant::now();
            let (late, on_time): (Vec<_>, Vec<_>) =
                batch.into_iter().partition(|q| q.deadline <= now);
            for queued in late {
                queued.answer(Err(StoreError::Unavailable(format!(
                    "the table kept changing faster than this replica followed it for {:?}; retry",
                    self.timeout
                ))));
            }
            batch = on_time;
            let first_deadline = batch.iter().map(|q| q.deadline).min()?;
            // Until the copy has the change a check failed on, a check
            // against it would fail again.
            let caught_up = applied.wait_for(|&now| now >= after);
            let _ = tokio::time::timeout_at(first_deadline.into(), caught_up).await;
            if Instant::now() >= first_deadline {
                continue;
            }
            if let Err(e) = self.check_watching() {
                batch.into_iter().for_each(|q| q.answer(Err(e.clone())));
                return None;
            }
            let seen = *applied.borrow_and_update();
            let verdicts = self.table.admits_together(batch.iter().map(|q| &q.record));
            let mut admitted = Vec::with_capacity(batch.len());
            for (queued, verdict) in batch.into_iter().zip(verdicts) {
                match verdict {
                    Ok(()) => admitted.push(queued),
                    Err(full) => queued.answer(Err(StoreError::Full(full))),
                }
            }
            batch = admitted;
            if batch.is_empty() {
                return None;
            }
            let reads = Reads::of(&self.keys, &batch, self.batching.max_ops);
            // No registration since the copy's revision: every instance key
            // is as the copy has it (a key deleted since only leaves more
            // room than the copy counted).
            let registered = self.keys.registered();
            let unchanged = Compare::mod_revision(registered.clone(), CompareOp::Less, seen + 1);
            let puts = batch.iter().map(|q| {
                TxnOp::put(
                    q.key.clone(),
                    q.json.clone(),
                    Some(PutOptions::new().with_prev_key()),
                )
            });
            let ops = puts
                .chain([TxnOp::put(registered, [], None)])
                .chain(reads.ops());
            let txn = Txn::new()
                .when([unchanged])
                .and_then(ops.collect::<Vec<_>>());
            let done = match self.write(txn).await {
                Ok(done) => done,
                Err(e) => {
                    batch.into_iter().for_each(|q| q.answer(Err(e.clone())));
                    return None;
                }
            };
            if !done.succeeded() {
                // A change the copy has not applied yet: once the watch
                // brings it, check again.
                after = seen + 1;
                continue;
            }
            let revision = done.header().map_or(0, |h| h.revision());
            let responses = done.op_responses();
            // The registrations' puts, the `registered` put, the reads.
            let (puts, rest) = responses.split_at(batch.len().min(responses.len()));
            let gets = rest.get(1..).unwrap_or_default();
            let fetched = reads.fetched(self, gets);
            for (queued, put) in batch.into_iter().zip(puts) {
                let updated = matches!(put, TxnOpResponse::Put(p) if p.prev_key().is_some());
                let answer = answer(&queued.record, reads.of_record(&queued.record, &fetched));
                queued.answer(Ok(Registered { answer, updated }));
            }
            return Some(revision);
        }
    }
}

/// The next transaction's registrations, from the front of `waiting`: one
/// per instance key, within `batching`'s bounds. Those
/// left keep their order.
fn take_batch(waiting: &mut VecDeque<Queued>, batching: &Batching) -> Vec<Queued> {
    let mut batch: Vec<Queued> = Vec::new();
    let mut keys = BTreeSet::new();
    let mut bytes = 0;
    let mut left = VecDeque::new();
    while let Some(queued) = waiting.pop_front() {
        let size = queued.key.len() + queued.json.len();
        let fits = batch.is_empty()
            || (batch.len() < batching.registrations() && bytes + size <= batching.bytes());
        if fits && !keys.contains(&queued.key) {
            keys.insert(queued.key.clone());
            bytes += size;
            batch.push(queued);
        } else {
            left.push_back(queued);
        }
    }
    *waiting = left;
    batch
}

/// The reads a transaction makes after its puts, for the answers: the
/// instances of each service a registration requires, or of every service
/// (for `*`, or when one read per service would pass etcd's operations).
struct Reads {
    keys: Keys,
    /// The key prefixes read, each once.
    prefixes: BTreeSet<String>,
    /// Whether `prefixes` is only the prefix of every instance.
    everything: bool,
}

impl Reads {
    fn of(keys: &Keys, batch: &[Queued], max_ops: usize) -> Reads {
        let mut reads = Reads {
            keys: keys.clone(),
            prefixes: BTreeSet::new(),
            everything: false,
        };
        for queued in batch {
            let prefixes = reads.prefixes_of(&queued.record);
            reads.prefixes.extend(prefixes);
        }
        let every = keys.services();
        // The registrations' puts, the `registered` put, the reads.
        let ops = batch.len() + 1 + reads.prefixes.len();
        reads.everything = reads.prefixes.contains(&every) || ops > max_ops;
        if reads.everything {
            reads.prefixes = BTreeSet::from([every]);
        }
        reads
    }

    /// The prefixes `record`'s answer is read from, unless everything is.
    fn prefixes_of(&self, record: &ServiceRecord) -> BTreeSet<String> {
        if self.everything || record.required_services.iter().any(|r| r == EVERY_SERVICE) {
            BTreeSet::from([self.keys.services()])
        } else {
            record
                .required_services
                .iter()
                .map(|name| self.keys.service(name))
                .collect()
        }
    }

    fn ops(&self) -> impl Iterator<Item = TxnOp> + '_ {
        self.prefixes
            .iter()
            .map(|prefix| TxnOp::get(prefix.clone(), Some(GetOptions::new().with_prefix())))
    }

    /// The records each read found, by prefix: `gets` are the reads'
    /// responses, in the order of [`Reads::ops`].
    fn fetched(
        &self,
        store: &EtcdStore,
        gets: &[TxnOpResponse],
    ) -> BTreeMap<String, Vec<ServiceRecord>> {
        self.prefixes
            .iter()
            .zip(gets)
            .map(|(prefix, response)| {
                let records = match response {
                    TxnOpResponse::Get(get) => get
                        .kvs()
                        .iter()
                        .filter_map(|kv| store.parse_record(kv))
                        .map(|(record, _)| record)
                        .collect(),
                    _ => Vec::new(),
                };
                (prefix.clone(), records)
            })
            .collect()
    }

    /// What the reads found for `record`'s answer (a superset of it).
    fn of_record(
        &self,
        record: &ServiceRecord,
        fetched: &BTreeMap<String, Vec<ServiceRecord>>,
    ) -> Vec<ServiceRecord> {
        self.prefixes_of(record)
            .iter()
            .filter_map(|prefix| fetched.get(prefix))
            .flatten()
            .cloned()
            .collect()
    }
}

/// A registration answer from the records read with it: every service the
/// record requires mapped to its instances (`[]` when none; every service
/// that has instances for `*`), leaving out the record itself.
fn answer(record: &ServiceRecord, fetched: Vec<ServiceRecord>) -> Instances {
    let mut answer = Instances::new();
    for required in &record.required_services {
        if required != EVERY_SERVICE {
            answer.entry(required.clone()).or_default();
        }
    }
    for other in fetched {
        if !other.same_instance(record) && record.requires(&other.name) {
            answer.entry(other.name.clone()).or_default().push(other);
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_like_the_in_memory_table() {
        let log = ServiceRecord::new("log", "h:2", vec![]);
        let visit = ServiceRecord::new("visit", "h:3", vec!["log".into(), "nope".into()]);
        let answer = answer(&visit, vec![log.clone(), visit.clone()]);
        assert_eq!(answer["log"], vec![log.clone()]);
        assert_eq!(answer["nope"], vec![]);
        let gateway = ServiceRecord::new("gateway", "h:1", vec!["*".into()]);
        let all = super::answer(&gateway, vec![log.clone(), gateway.clone()]);
        assert_eq!(all.keys().collect::<Vec<_>>(), ["log"]);
    }
}

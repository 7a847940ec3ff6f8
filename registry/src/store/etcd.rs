//! The etcd store: the table lives in etcd, one key per instance,
//! `PREFIX/services/NAME/ADDR`, whose value is the JSON record; several
//! registry replicas share it.
//!
//! - Writes go to etcd, each in one request (a registration and its answer
//!   are one transaction), so they are linearizable and never half done; a
//!   write etcd does not acknowledge within `--etcd-timeout` answers 503.
//! - Each replica keeps a copy of the table, read once and then kept
//!   current by a prefix watch, which delivers every change in revision
//!   order. Reads, heartbeat targets and notifications come from that copy.
//! - Every replica notifies the dependents of every change it sees on the
//!   watch: a dependent hears of each change at least once (once per replica
//!   that is up), and from each replica in revision order. Duplicates are
//!   harmless: a notification says the state of one instance. A replica
//!   takes writes only while its watch is established, so that the replica
//!   that made a change is always one that tells of it.
//! - The keys carry no lease: whether an instance lives is for the
//!   heartbeats to say, and only the leading replica runs them (see
//!   `leader.rs`). An eviction deletes the key only if it still holds the
//!   registration that was checked (its mod revision).
//! - When the watch breaks (etcd unreachable, or the member lost its
//!   leader), the replica keeps answering reads from its copy, marked stale,
//!   and watches again from the revision after the last one it applied, so
//!   no change is missed. If etcd compacted that revision away, the replica
//!   reads the whole table again and tells dependents of the differences.
//! - If etcd lost its data (restored from an old backup, or a new cluster
//!   at the same addresses), the replica reads the table again, as at its
//!   start, and tells dependents nothing, as a restarted in-memory registry
//!   does. The instances etcd forgot get no heartbeat and register again
//!   after their `--heartbeat-timeout`; meanwhile their callers keep them.
//!   Two signs tell of the loss whenever a watch starts: etcd's revision is
//!   below the last one applied here (an old backup), or the table's marker
//!   key is gone or holds another value (`PREFIX/table`, created with the
//!   table with a random value: an empty cluster whose revision already
//!   passed the old one; its revisions alone cannot tell, a new cluster
//!   numbering its writes as the old one did).
//! - The table's limits are checked against the copy, and the registration
//!   is made only if no registration was made since the revision the copy
//!   reflects (in the same transaction, one compare of a key every
//!   registration writes, `PREFIX/registered`): so replicas registering at
//!   once cannot together pass the limits. If one
//!   did change, the copy catches up from the watch and the check is made
//!   again, within `--etcd-timeout`. So that a replica's registrations do
//!   not conflict with each other, it makes them in turns, each
//!   transaction carrying every registration waiting (`commit.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, KvClient, Txn,
    TxnOp, TxnOpResponse, TxnResponse, WatchClient, WatchOptions,
};
use protocol::record::ServiceRecord;
use tokio::sync::{mpsc, watch};

use super::{InstanceView, Registered, RegistrationId, Store, StoreError, Table, Target};
use crate::leader::Fence;
use crate::metrics::Metrics;

mod commit;

pub use commit::Batching;

/// The first pause before watching again after a failure; it doubles up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The largest message read from etcd: the whole table, its keys and
/// values, at start and in a `*` registration's answer, is a few times the
/// table's byte budget at most (the client's default, 4 MB, is less).
const MAX_MESSAGE: usize = 64 << 20;

/// The `backend` label of the store's metrics.
pub const BACKEND: &str = "etcd";

/// Where the registry's keys live under `--etcd-prefix`.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// Every instance key starts with this.
    pub fn services(&self) -> String {
        format!("{}/services/", self.prefix)
    }

    fn service(&self, name: &str) -> String {
        format!("{}/services/{name}/", self.prefix)
    }

    fn instance(&self, name: &str, addr: &str) -> String {
        format!("{}/services/{name}/{addr}", self.prefix)
    }

    /// The table's marker: created once, with the table, holding a random
    /// value that names the table's lifetime in etcd.
    fn marker(&self) -> String {
        format!("{}/table", self.prefix)
    }

    /// The key every registration writes too, in the same transaction:
    /// its mod revision is the revision of the last registration, which
    /// one compare of one key checks (a compare over the instance keys
    /// reads them all).
    fn registered(&self) -> String {
        format!("{}/registered", self.prefix)
    }

    /// The key the leading replica holds (`leader.rs`).
    pub fn leader(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    /// (`Name`, `Addr`) of an instance key. Names and addresses contain no
    /// `/` (records are validated), so the first `/` separates them.
    fn parse_instance<'k>(&self, key: &'k str) -> Option<(&'k str, &'k str)> {
        let rest = key.strip_prefix(&self.services())?;
        rest.split_once('/')
    }
}

/// Where the local copy stands against etcd, from one watch to the next.
struct Position {
    /// The last revision applied to the copy; none until it is read.
    applied: Option<i64>,
    /// The value of the table's marker when the copy was read.
    marker: Vec<u8>,
    /// No read filled the copy yet, or etcd lost what it was read from: the
    /// next read tells dependents nothing.
    first_read: bool,
}

pub struct EtcdStore {
    client: Client,
    /// The client's key-value and watch services, reading [`MAX_MESSAGE`].
    kv: KvClient,
    watcher: WatchClient,
    keys: Keys,
    table: Table,
    timeout: Duration,
    /// Whether the watch is established, i.e. the copy is current.
    watching: AtomicBool,
    metrics: Arc<Metrics>,
    /// Held while this replica leads: its evictions are made under it.
    fence: Fence,
    /// The revision the copy reflects: every change of an instance key up
    /// to it is applied.
    applied: watch::Sender<i64>,
    /// Registrations for the committing task ([`commit`]).
    registrations: mpsc::Sender<commit::Queued>,
    batching: Batching,
}

/// Any etcd failure, as the one line a 503 carries.
fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(one_line(e))
}

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().replace(['\r', '\n'], " ")
}

/// Why a request failed: etcd's error, or none when it did not answer
/// within `timeout`.
fn failed(error: Option<etcd_client::Error>, timeout: Duration) -> String {
    match error {
        Some(e) => one_line(e),
        None => format!("no answer within {timeout:?}"),
    }
}

/// One etcd request, bounded by `timeout`, for the store and the leader
/// election alike. Its round trip is measured as `op` when etcd answered,
/// in time or not (a request that timed out has no round trip to tell);
/// a failure is one line.
pub async fn bounded<T>(
    timeout: Duration,
    metrics: &Metrics,
    op: &'static str,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    timed(timeout, metrics, op, request)
        .await
        .map_err(|error| failed(error, timeout))
}

/// gRPC's `UNAVAILABLE` (a wire constant): the member the request went to
/// could not serve it. Among the causes: the client's connection to that
/// member is down (the member died; the client spreads requests over every
/// endpoint it was given), or the member has no leader yet.
const GRPC_UNAVAILABLE: i32 = 14;

/// Pause before asking again after `UNAVAILABLE`; it doubles.
const FIRST_RETRY: Duration = Duration::from_millis(25);

/// Sends the request `request()` makes, again after `UNAVAILABLE` (another
/// member may serve it: measured, a member down of three failed about a
/// quarter of single attempts) until `timeout` from the first. Only for
/// requests that may be applied twice: the store's writes are (a put
/// registers again, a delete or a fenced, revision-checked eviction does
/// nothing the second time).
async fn retrying<T, F, Fut>(
    timeout: Duration,
    metrics: &Metrics,
    op: &'static str,
    mut request: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_RETRY;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let error = match timed(left, metrics, op, request()).await {
            Ok(answer) => return Ok(answer),
            Err(Some(error)) => error,
            Err(None) => return Err(failed(None, timeout)),
        };
        let unavailable = matches!(&error, etcd_client::Error::GRpcStatus(status)
            if i32::from(status.code()) == GRPC_UNAVAILABLE);
        if !unavailable || Instant::now() + pause >= deadline {
            return Err(failed(Some(error), timeout));
        }
        tracing::debug!(op, error = %error, "etcd unavailable; asking again in {pause:?}");
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}

/// One attempt, bounded by `timeout` and timed as `op` when etcd answered:
/// etcd's error, or none when it did not answer in time.
async fn timed<T>(
    timeout: Duration,
    metrics: &Metrics,
    op: &'static str,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, Option<etcd_client::Error>> {
    let sent = Instant::now();
    let answer = tokio::time::timeout(timeout, request).await;
    if answer.is_ok() {
        metrics.backend_round_trip(BACKEND, op, sent.elapsed());
    }
    match answer {
        Ok(answer) => answer.map_err(Some),
        Err(_) => Err(None),
    }
}

impl EtcdStore {
    /// Sets up the client; no connection is made yet, so etcd may come up
    /// later. Fails only on unusable endpoint URLs. `table` is the empty
    /// copy, with its notifier and limits. The receiver is for
    /// [`EtcdStore::commit`].
    pub async fn connect(
        endpoints: &[String],
        keys: Keys,
        timeout: Duration,
        table: Table,
        metrics: Arc<Metrics>,
        fence: Fence,
        batching: Batching,
    ) -> Result<(Self, mpsc::Receiver<commit::Queued>), StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            // A member that lost its quorum refuses at once instead of
            // letting requests wait, and ends watches it cannot serve.
            .with_require_leader(true)
            // Finds a member that died without closing its connections.
            .with_keep_alive(Duration::from_secs(1), timeout)
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| StoreError::Unavailable(format!("--etcd {}: {e}", endpoints.join(","))))?;
        let (registrations, queue) = commit::queue(&batching);
        let store = EtcdStore {
            kv: client.kv_client().max_decoding_message_size(MAX_MESSAGE),
            watcher: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
            client,
            keys,
            table,
            timeout,
            watching: AtomicBool::new(false),
            metrics,
            fence,
            applied: watch::Sender::new(0),
            registrations,
            batching,
        };
        Ok((store, queue))
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A write is taken only while this replica watches: then its own watch
    /// sees the change and tells the dependents. A replica that took writes
    /// before its first read (or while it had lost its watch) could have
    /// them told by nobody, if no other replica was watching either.
    fn check_watching(&self) -> Result<(), StoreError> {
        if self.watching.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "this replica is not following etcd yet (or lost its watch); retry".into(),
            ))
        }
    }

    /// One etcd request, bounded by `--etcd-timeout` and timed.
    async fn call<T>(
        &self,
        op: &'static str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        bounded(self.timeout, &self.metrics, op, request)
            .await
            .map_err(StoreError::Unavailable)
    }

    /// A transaction the store may send twice (see [`retrying`]), within
    /// `--etcd-timeout`.
    async fn write(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        retrying(self.timeout, &self.metrics, "txn", || {
            let mut kv = self.kv.clone();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(StoreError::Unavailable)
    }

    /// Keeps the local copy current, for as long as the task runs.
    pub async fn follow(self: Arc<Self>) {
        let mut pos = Position {
            applied: None,
            marker: Vec::new(),
            first_read: true,
        };
        let mut backoff = FIRST_BACKOFF;
        loop {
            let result = self.follow_once(&mut pos, &mut backoff).await;
            self.watching.store(false, Ordering::SeqCst);
            match result {
                Ok(()) => tracing::warn!("etcd ended the watch; watching again"),
                Err(e) => tracing::warn!(error = %e, "etcd watch failed; retrying in {backoff:?}"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The value of the table's marker, made first if etcd holds none (a
    /// new table, or one etcd lost).
    async fn ensure_marker(&self) -> Result<Vec<u8>, StoreError> {
        let key = self.keys.marker();
        let ours = format!("sparrow registry table {:032x}", rand::random::<u128>()).into_bytes();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), ours.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let answer = self.write(txn).await?;
        if answer.succeeded() {
            return Ok(ours);
        }
        answer
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(got) => got.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            })
            .ok_or_else(|| StoreError::Unavailable("the table's marker vanished; retry".into()))
    }

    /// Whether etcd still holds the table the copy was read from: its
    /// marker, as created then.
    async fn marker_kept(&self, pos: &Position) -> Result<bool, StoreError> {
        let mut client = self.client();
        let read = self
            .call("range", client.get(self.keys.marker(), None))
            .await?;
        Ok(read.kvs().first().map(KeyValue::value) == Some(pos.marker.as_slice()))
    }

    async fn follow_once(
        &self,
        pos: &mut Position,
        backoff: &mut Duration,
    ) -> Result<(), StoreError> {
        let services = self.keys.services();
        let start = match pos.applied {
            Some(applied) => applied + 1,
            None => {
                pos.marker = self.ensure_marker().await?;
                let mut kv = self.kv.clone();
                let read = self
                    .call(
                        "range",
                        kv.get(services.clone(), Some(GetOptions::new().with_prefix())),
                    )
                    .await?;
                let at = read.header().map_or(0, |h| h.revision());
                let records = read
                    .kvs()
                    .iter()
                    .filter_map(|kv| self.parse_record(kv))
                    .collect();
                // A first read only fills the copy; a read after a gap the
                // watch could not cover tells dependents what changed.
                self.table.reset(records, !pos.first_read);
                pos.first_read = false;
                pos.applied = Some(at);
                self.applied.send_replace(at);
                tracing::info!(
                    revision = at,
                    instances = self.table.len(),
                    "read the table from etcd"
                );
                at + 1
            }
        };
        let mut watcher = self.watcher.clone();
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let mut stream = self
            .call("watch", watcher.watch(services, Some(options)))
            .await?;
        while let Some(answer) = stream.message().await.map_err(unavailable)? {
            if answer.created() {
                // Checked once the watch is there: a loss after it breaks
                // the watch, and is checked at the next.
                let now = answer.header().map_or(0, |h| h.revision());
                let lost = if now < start - 1 {
                    Some("etcd's revision is below the last one applied here")
                } else if !self.marker_kept(pos).await? {
                    Some("the table's marker key is gone or holds another value")
                } else {
                    None
                };
                if let Some(sign) = lost {
                    tracing::warn!(
                        applied = start - 1,
                        etcd = now,
                        "{sign}: etcd lost its data; reading the table again"
                    );
                    pos.applied = None;
                    pos.first_read = true;
                    return Err(StoreError::Unavailable("etcd lost its data".into()));
                }
                self.watching.store(true, Ordering::SeqCst);
                *backoff = FIRST_BACKOFF;
                tracing::info!(from = start, "watching etcd");
            }
            if answer.canceled() {
                if answer.compact_revision() > 0 {
                    // What we missed is gone from etcd's history.
                    pos.applied = None;
                }
                return Err(StoreError::Unavailable(format!(
                    "watch canceled: {}",
                    answer.cancel_reason()
                )));
            }
            for event in answer.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => {
                        if let Some((record, id)) = self.parse_record(kv) {
                            self.table.upsert(record, id, false);
                        }
                    }
                    EventType::Delete => {
                        if let Some((name, addr)) =
                            kv.key_str().ok().and_then(|k| self.keys.parse_instance(k))
                        {
                            self.table.remove(name, addr);
                        }
                    }
                }
                pos.applied = Some(kv.mod_revision());
            }
            if let Some(applied) = pos.applied {
                self.applied
                    .send_if_modified(|seen| std::mem::replace(seen, applied) != applied);
            }
        }
        Ok(())
    }

    /// The record an instance key holds, with its registration id (the
    /// key's mod revision: a new one at every registration).
    fn parse_record(&self, kv: &KeyValue) -> Option<(ServiceRecord, RegistrationId)> {
        let record: Option<ServiceRecord> = serde_json::from_slice(kv.value())
            .ok()
            .filter(|r: &ServiceRecord| r.validate().is_ok());
        if record.is_none() {
            tracing::warn!(key = %String::from_utf8_lossy(kv.key()), "ignoring a key that holds no valid record");
        }
        let id = RegistrationId(u64::try_from(kv.mod_revision()).ok()?);
        record.map(|r| (r, id))
    }
}

impl Store for EtcdStore {
    fn table(&self) -> &Table {
        &self.table
    }

    async fn register(&self, record: ServiceRecord) -> Result<Registered, StoreError> {
        self.check_watching()?;
        self.queue_registration(record).await
    }

    async fn deregister(&self, record: &ServiceRecord) -> Result<bool, StoreError> {
        self.check_watching()?;
        let key = self.keys.instance(&record.name, &record.addr);
        let done = self
            .write(Txn::new().and_then([TxnOp::delete(key, None)]))
            .await?;
        let deleted = done
            .op_responses()
            .iter()
            .any(|r| matches!(r, TxnOpResponse::Delete(d) if d.deleted() > 0));
        Ok(deleted)
    }

    async fn evict(&self, target: &Target) -> Result<bool, StoreError> {
        self.check_watching()?;
        let key = self.keys.instance(&target.name, &target.addr);
        let checked = i64::try_from(target.id.0).unwrap_or(i64::MAX);
        // Only a replica that still leads evicts (see `leader::Fence`).
        let Some(leading) = self.fence.held() else {
            return Ok(false);
        };
        let txn = Txn::new()
            .when([
                Compare::mod_revision(key.clone(), CompareOp::Equal, checked),
                leading,
            ])
            .and_then([TxnOp::delete(key, None)]);
        let evicted = self.write(txn).await?.succeeded();
        if !evicted {
            tracing::debug!(
                name = target.name,
                addr = target.addr,
                "not evicted: registered again, or this replica no longer leads"
            );
        }
        Ok(evicted)
    }

    fn stale(&self) -> bool {
        !self.watching.load(Ordering::SeqCst)
    }

    async fn current_view(&self, name: &str) -> Result<Option<Vec<InstanceView>>, StoreError> {
        // A linearizable read: a member cut off from the others' quorum
        // cannot answer it (the client asks for a leader), where this
        // replica's copy would answer without what the majority did since.
        let mut kv = self.kv.clone();
        let options = GetOptions::new().with_prefix();
        let read = self
            .call("range", kv.get(self.keys.service(name), Some(options)))
            .await?;
        // Listed in the order they first registered, as the copy lists them:
        // a key's create revision stays through registrations again.
        let mut found: Vec<_> = read
            .kvs()
            .iter()
            .filter_map(|kv| Some((kv.create_revision(), self.parse_record(kv)?)))
            .filter(|(_, (record, _))| record.name == name)
            .collect();
        found.sort_by_key(|(created, _)| *created);
        if found.is_empty() {
            return Ok(None);
        }
        let found = found.into_iter().map(|(_, found)| found).collect();
        Ok(Some(self.table.views_of(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        let keys = Keys::new("/sparrow/");
        let key = keys.instance("log", "127.0.0.1:20002");
        assert_eq!(key, "/sparrow/services/log/127.0.0.1:20002");
        assert_eq!(keys.parse_instance(&key), Some(("log", "127.0.0.1:20002")));
        assert_eq!(keys.parse_instance("/other/services/log/h:1"), None);
        assert_eq!(keys.leader(), "/sparrow/leader");
    }
}

//! Leadership among the replicas of an etcd-backed registry: exactly one of
//! them runs the heartbeat sweeps and evictions.
//!
//! The leader holds the key `PREFIX/leader`, attached to a lease of
//! `--leader-ttl`. A replica takes the key with a transaction that succeeds
//! only if nobody holds it (`create_revision == 0`), then refreshes the
//! lease every third of the TTL. Others look every quarter of the TTL.
//!
//! When the leader dies, its lease expires within the TTL and the key goes
//! with it; another replica takes it at its next look. So a new leader runs
//! the sweeps at most about `1.25 × TTL` (plus a few etcd round trips) after
//! the old one died, starting with one at once.
//!
//! A leader that cannot refresh its lease (etcd unreachable) stops sweeping
//! once two thirds of the TTL have passed since its last refresh, before the
//! lease can have expired, so two replicas never sweep at once for long; and
//! an eviction deletes only the registration that was checked, so one
//! overlapping sweep does no harm. A replica that stops (SIGTERM) revokes
//! its lease, so the next one takes over at once.
//!
//! Timing alone cannot hold when the process itself stops (paused, swapped
//! out, a stalled VM): it resumes believing it leads, and its sweep runs on
//! before it learns otherwise. So every eviction is also fenced ([`Fence`]):
//! etcd applies it only while the leader key is still held with this
//! replica's lease, and a deposed leader evicts nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use protocol::locks::lock;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::store::etcd::{BACKEND, bounded};

/// Aborts the task when dropped: the sweeps end with the leadership, even
/// when the leadership task itself is aborted.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The condition a leader's writes are made under: the leader key still
/// held with the lease this replica took it with. Shared by the election,
/// which sets the lease, and the store, whose evictions carry the check.
#[derive(Clone)]
pub struct Fence {
    key: String,
    /// The lease while this replica leads.
    lease: Arc<Mutex<Option<i64>>>,
}

impl Fence {
    /// A fence on the leader key `key`, not held yet.
    pub fn new(key: String) -> Self {
        Fence {
            key,
            lease: Arc::new(Mutex::new(None)),
        }
    }

    /// What etcd must find for a leader's write to apply; none while this
    /// replica does not lead.
    pub fn held(&self) -> Option<Compare> {
        let lease = (*lock(&self.lease))?;
        Some(Compare::lease(self.key.clone(), CompareOp::Equal, lease))
    }
}

pub struct Leadership {
    client: Client,
    /// Who holds the key: `ADDR pid PID`, for people reading etcd.
    me: String,
    ttl: Duration,
    /// Deadline of each etcd request.
    timeout: Duration,
    /// The key competed for, and the lease while this replica leads,
    /// which fences its evictions.
    fence: Fence,
    metrics: Arc<Metrics>,
}

impl Leadership {
    /// Competes for `fence`'s key.
    pub fn new(
        client: Client,
        fence: Fence,
        me: String,
        ttl: Duration,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Leadership {
            client,
            me,
            ttl,
            timeout,
            fence,
            metrics,
        }
    }

    /// Seconds of lease: etcd counts in whole seconds.
    fn ttl_seconds(&self) -> i64 {
        i64::try_from(self.ttl.as_millis().div_ceil(1000))
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// Competes for leadership; while this replica leads, `lead()` runs (it
    /// is aborted when leadership is lost). Returns only if what `lead()`
    /// started ends by itself while leading, once the key is let go of.
    pub async fn run(self: Arc<Self>, lead: impl Fn() -> JoinHandle<()>) {
        let look_every = self.ttl / 4;
        // A follower shows 0 from the start, not no sample.
        self.metrics.backend_leader(BACKEND, false);
        loop {
            match self.campaign().await {
                Ok(Some(lease)) => {
                    *lock(&self.fence.lease) = Some(lease);
                    self.metrics.backend_leader(BACKEND, true);
                    tracing::info!(
                        me = self.me,
                        key = self.fence.key,
                        "leading: running the heartbeat sweeps"
                    );
                    let mut sweeps = AbortOnDrop(lead());
                    // The sweeps loop for as long as they run: if they end
                    // (a panic), holding on would keep every other replica
                    // from sweeping while nobody does.
                    let sweeps_ended = tokio::select! {
                        () = self.hold(lease) => None,
                        ended = &mut sweeps.0 => Some(ended),
                    };
                    drop(sweeps);
                    self.metrics.backend_leader(BACKEND, false);
                    if let Some(ended) = sweeps_ended {
                        self.resign().await;
                        tracing::error!(
                            me = self.me,
                            "the heartbeat sweeps ended ({}); leadership released",
                            match ended {
                                Ok(()) => "they returned".to_owned(),
                                Err(e) => e.to_string(),
                            }
                        );
                        return;
                    }
                    tracing::warn!(
                        me = self.me,
                        "no longer leading: the heartbeat sweeps stopped"
                    );
                    self.resign().await;
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "cannot campaign for leadership"),
            }
            tokio::time::sleep(look_every).await;
        }
    }

    /// Takes the key if nobody holds it; the lease it is held with.
    async fn campaign(&self) -> Result<Option<i64>, String> {
        let mut client = self.client.clone();
        let held = self
            .bounded("range", client.get(self.fence.key.clone(), None))
            .await?;
        if !held.kvs().is_empty() {
            return Ok(None);
        }
        let lease = self
            .bounded("lease_grant", client.lease_grant(self.ttl_seconds(), None))
            .await?
            .id();
        let take = Txn::new()
            .when([Compare::create_revision(
                self.fence.key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(
                self.fence.key.clone(),
                self.me.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        match self.bounded("txn", client.txn(take)).await {
            Ok(taken) if taken.succeeded() => Ok(Some(lease)),
            other => {
                let _ = self
                    .bounded("lease_revoke", client.lease_revoke(lease))
                    .await;
                other.map(|_| None)
            }
        }
    }

    /// Refreshes the lease until that fails for too long, or etcd says it
    /// expired.
    async fn hold(&self, lease: i64) {
        let refresh_every = self.ttl / 3;
        let give_up_after = self.ttl * 2 / 3;
        let mut last_refresh = Instant::now();
        'stream: while last_refresh.elapsed() < give_up_after {
            let mut client = self.client.clone();
            let Ok((mut keeper, mut answers)) = self
                .bounded("lease_keep_alive", client.lease_keep_alive(lease))
                .await
            else {
                tokio::time::sleep(refresh_every / 4).await;
                continue;
            };
            loop {
                let sent = Instant::now();
                if keeper.keep_alive().await.is_err() {
                    continue 'stream;
                }
                match tokio::time::timeout(refresh_every, answers.message()).await {
                    Ok(Ok(Some(answer))) if answer.ttl() > 0 => last_refresh = sent,
                    Ok(Ok(Some(_))) => {
                        tracing::warn!("the leadership lease expired");
                        return;
                    }
                    // The stream broke (e.g. its member died): open another.
                    Ok(Ok(None) | Err(_)) => continue 'stream,
                    Err(_) => {}
                }
                if last_refresh.elapsed() >= give_up_after {
                    tracing::warn!(
                        "the leadership lease was not refreshed for {:?}",
                        last_refresh.elapsed()
                    );
                    return;
                }
                tokio::time::sleep(refresh_every.saturating_sub(sent.elapsed())).await;
            }
        }
    }

    /// Lets go of the key at once, if this replica holds it (on stepping down
    /// and on stop), so that another takes over without waiting for the
    /// lease to expire.
    pub async fn resign(&self) {
        let Some(lease) = lock(&self.fence.lease).take() else {
            return;
        };
        let mut client = self.client.clone();
        match self
            .bounded("lease_revoke", client.lease_revoke(lease))
            .await
        {
            Ok(_) => tracing::info!("leadership released"),
            Err(e) => {
                tracing::debug!(error = %e, "cannot revoke the leadership lease; it expires by itself")
            }
        }
    }

    /// One etcd request, bounded by `--etcd-timeout` and timed.
    async fn bounded<T>(
        &self,
        op: &'static str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, String> {
        bounded(self.timeout, &self.metrics, op, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leases_are_whole_seconds() {
        let client = Client::connect(["http://127.0.0.1:1"], None).await.unwrap();
        let leadership = |ttl| {
            Leadership::new(
                client.clone(),
                Fence::new("k".into()),
                "me".into(),
                ttl,
                Duration::from_secs(1),
                Arc::new(Metrics::new()),
            )
        };
        assert_eq!(leadership(Duration::from_secs(3)).ttl_seconds(), 3);
        assert_eq!(leadership(Duration::from_millis(2500)).ttl_seconds(), 3);
        assert_eq!(leadership(Duration::from_millis(10)).ttl_seconds(), 1);
    }

    /// Sweeps that end while leading (a panic) must not leave the key held
    /// with nobody sweeping: the leader lets go at once, and stops, which
    /// stops the replica (see `server`).
    #[test]
    fn a_leader_whose_sweeps_end_lets_go_at_once_and_stops() {
        // The harness waits for etcd on a runtime of its own.
        let etcd = harness::etcd::EtcdCluster::start(1);
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(sweeps_ending(&etcd));
    }

    async fn sweeps_ending(etcd: &harness::etcd::EtcdCluster) {
        let endpoints = etcd.endpoints();
        let endpoints: Vec<&str> = endpoints.split(',').collect();
        let client = Client::connect(endpoints, None).await.unwrap();
        let key = "/sparrow-test/leader";
        let leadership = Arc::new(Leadership::new(
            client.clone(),
            Fence::new(key.into()),
            "me".into(),
            Duration::from_secs(30),
            Duration::from_secs(2),
            Arc::new(Metrics::new()),
        ));
        let led = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let lead = {
            let led = Arc::clone(&led);
            move || {
                led.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async { panic!("a bug in the sweeps") })
            }
        };
        tokio::time::timeout(Duration::from_secs(20), leadership.run(lead))
            .await
            .expect("the leadership ends when its sweeps do");
        assert_eq!(led.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Let go of at once: the lease would have kept it for 30 s.
        let held = client.clone().get(key, None).await.unwrap();
        assert!(held.kvs().is_empty(), "the leader key is still held");
    }
}

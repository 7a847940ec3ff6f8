//! Heartbeats: every interval, `GET http://{Addr}/heart-beat` on every
//! registered instance; an instance that fails every attempt is evicted and
//! its dependents are notified with `DELETE`.
//!
//! The original held the table's read lock while feeding a channel of size
//! one to workers that took the write lock to evict: it deadlocked. Here a
//! sweep copies the targets out under a short lock, each instance is checked
//! by its own task, a semaphore bounds the requests in flight, and the table
//! is only touched between requests.
//!
//! The semaphore is held only during a request, not during the pause between
//! two attempts, so many dead instances are all evicted about
//! `(attempts - 1) × retry-delay` after the sweep finds them, not one batch
//! after another. Each attempt is bounded by the notify timeout.
//!
//! Heartbeats carry no token: answering one changes nothing, and services
//! written against the original protocol must keep answering them.
//!
//! Evictions are withheld while more than `--eviction-guard` percent of a
//! table of at least `--eviction-guard-min` instances failed their latest
//! heartbeat (Eureka's "self-preservation", Nacos's "protect threshold"):
//! so many failing at once is more likely this registry cut off from them
//! than the instances dead, and evicting them all would tell every
//! dependent to forget every instance, each host coming back only after its
//! `--heartbeat-timeout`. On etcd that is a leading replica cut off from
//! the hosts while it still reaches etcd. The instances stay, listed as
//! failing, and each sweep decides again: once enough of them answer, the
//! dead ones go.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use http::{Method, StatusCode};
use tokio::sync::Semaphore;
use tokio::task::{Id, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Store, Target};
use protocol::http::{HttpClient, MAX_HEARTBEAT_ANSWER, send};
use protocol::token::Token;

/// Everything a check needs, shared by all checks.
struct Checker<S> {
    store: Arc<S>,
    http: HttpClient,
    config: Config,
    permits: Semaphore,
    metrics: Arc<Metrics>,
    guard: Guard,
}

/// When evictions are withheld (see the module's doc).
#[derive(Clone, Copy, Debug)]
struct Guard {
    percent: u32,
    min: u32,
}

impl Guard {
    /// Whether `failing` of `total` instances withhold evictions.
    fn holds(&self, failing: usize, total: usize) -> bool {
        total >= self.min as usize && failing * 100 > self.percent as usize * total
    }
}

/// Runs sweeps forever; stop it by dropping (aborting) the future, which
/// also aborts the checks in flight.
/// With an etcd store, only the leading replica runs them (`leader.rs`),
/// and a new leader sweeps `at_once`: the instances have gone unchecked
/// since the old leader died.
pub async fn run<S: Store>(
    store: Arc<S>,
    http: HttpClient,
    config: Config,
    at_once: bool,
    metrics: Arc<Metrics>,
) {
    let interval = config.heartbeat_interval;
    let checker = Arc::new(Checker {
        guard: Guard {
            percent: config.eviction_guard,
            min: config.eviction_guard_min,
        },
        metrics,
        permits: Semaphore::new(config.heartbeat_concurrency as usize),
        store,
        http,
        config,
    });
    let first = if at_once {
        Instant::now()
    } else {
        Instant::now() + interval
    };
    let mut ticker = tokio::time::interval_at(first, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut checks = Checks::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let targets = checker.store.table().targets();
                tracing::debug!(instances = targets.len(), "heartbeat sweep");
                let (failing, total) = checker.store.table().failing();
                if checker.guard.holds(failing, total) {
                    tracing::warn!(
                        failing,
                        instances = total,
                        "more than {}% of the instances are failing their heartbeats: \
                         evictions withheld (this registry's network is the likelier fault)",
                        checker.guard.percent
                    );
                }
                for target in targets {
                    checks.start(target, |target| Arc::clone(&checker).check(target));
                }
            }
            Some(()) = checks.finish_next() => {}
        }
    }
}

/// The checks in flight, one at most per target.
///
/// A check can outlast the interval (an instance that never answers); the
/// next sweep skips its target rather than checking it twice at once. The
/// set is keyed by the whole target: on etcd, registrations made in one
/// transaction share their id, and a set of ids checked one of them and
/// skipped the others at every sweep, never to evict them. A check is
/// forgotten by its task's id, which a panic reports too: forgotten by the
/// target it returns, a check that panicked would leave its target skipped
/// until the registry restarts.
#[derive(Default)]
struct Checks {
    tasks: JoinSet<()>,
    targets: HashMap<Id, Target>,
    running: HashSet<Target>,
}

impl Checks {
    /// Spawns `check(target)` unless a check of `target` is in flight.
    fn start<F>(&mut self, target: Target, check: impl FnOnce(Target) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.running.insert(target.clone()) {
            let id = self.tasks.spawn(check(target.clone())).id();
            self.targets.insert(id, target);
        }
    }

    /// Waits for a check to end, however it ended, and forgets it; `None`
    /// when none is in flight.
    async fn finish_next(&mut self) -> Option<()> {
        let id = match self.tasks.join_next_with_id().await? {
            Ok((id, ())) => id,
            Err(e) => {
                tracing::error!(error = %e, "heartbeat check failed");
                e.id()
            }
        };
        if let Some(target) = self.targets.remove(&id) {
            self.running.remove(&target);
        }
        Some(())
    }
}

impl<S: Store> Checker<S> {
    async fn check(self: Arc<Self>, target: Target) {
        let attempts = self.config.heartbeat_attempts;
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.config.heartbeat_retry_delay).await;
            }
            let alive = self.probe(&target).await;
            self.metrics.heartbeat(alive);
            self.store.table().record_heartbeat(&target, alive);
            if alive {
                return;
            }
            tracing::debug!(
                name = target.name,
                addr = target.addr,
                attempt,
                "heartbeat failed"
            );
        }
        let (failing, total) = self.store.table().failing();
        if self.guard.holds(failing, total) {
            self.metrics.eviction_withheld();
            tracing::debug!(
                name = target.name,
                addr = target.addr,
                failing,
                "eviction withheld"
            );
            return;
        }
        // The store tells the dependents (the in-memory table at once, the
        // etcd watch of every replica when the deletion comes back).
        match self.store.evict(&target).await {
            Ok(true) => {
                self.metrics.evicted();
                tracing::info!(
                    name = target.name,
                    addr = target.addr,
                    "evicted after {attempts} failed heartbeats"
                );
            }
            Ok(false) => {}
            // The instance stays; the next sweep checks it again.
            Err(e) => tracing::warn!(
                name = target.name,
                addr = target.addr,
                error = %e,
                "cannot evict"
            ),
        }
    }

    async fn probe(&self, target: &Target) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let url = format!("http://{}/heart-beat", target.addr);
        matches!(
            send(
                &self.http,
                Method::GET,
                &url,
                Default::default(),
                self.config.notify_timeout,
                &Token::default(),
                MAX_HEARTBEAT_ANSWER,
            )
            .await,
            Ok((StatusCode::OK, _))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(addr: &str) -> Target {
        Target {
            id: crate::store::RegistrationId(1),
            name: "svc".into(),
            addr: addr.into(),
        }
    }

    #[test]
    fn the_guard_holds_past_its_share_in_a_table_large_enough() {
        let guard = Guard {
            percent: 50,
            min: 10,
        };
        assert!(!guard.holds(5, 10), "half is not more than half");
        assert!(guard.holds(6, 10));
        assert!(!guard.holds(9, 9), "a table under the minimum");
        let off = Guard {
            percent: 100,
            min: 1,
        };
        assert!(!off.holds(10, 10), "100% never holds");
    }

    #[tokio::test]
    async fn a_target_is_checked_once_at_a_time_and_again_after_a_panic() {
        let mut checks = Checks::default();
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        checks.start(target("a:1"), |_| async {
            let _ = held.await;
        });
        // In flight: a second start of the same target spawns nothing.
        checks.start(target("a:1"), |_| async { unreachable!() });
        assert_eq!(checks.tasks.len(), 1);
        release.send(()).unwrap();
        checks.finish_next().await.unwrap();
        assert!(checks.running.is_empty());

        checks.start(target("a:1"), |_| async { panic!("a check that panics") });
        checks.finish_next().await.unwrap();
        assert!(checks.running.is_empty(), "a panicked check is forgotten");
        let (ran, rx) = tokio::sync::oneshot::channel();
        checks.start(target("a:1"), |_| async move {
            let _ = ran.send(());
        });
        checks.finish_next().await.unwrap();
        rx.await.expect("checked again after the panic");
        assert!(checks.finish_next().await.is_none());
    }
}

//! The registry's metrics, served on `GET /metrics` in the Prometheus text
//! format: what the table holds (computed at scrape time), and counters of
//! what the API, the heartbeat and the notifier did.
//!
//! Every counter's label values are known in advance, so each one is
//! resolved once here and an event costs one atomic add.
//!
//! The `sparrow_registry_backend_*` metrics are for a table kept in etcd:
//! its store and leader election report through
//! [`Metrics::backend_round_trip`] and [`Metrics::backend_leader`]. The
//! in-memory table never does, so they have no samples there.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use protocol::metrics::{DurationHistogram, register, register_seconds, scrape_response};

use crate::store::table::{Health, Table};

/// Buckets of the notification latency, from queued to answered: loopback
/// answers take about a millisecond, a retried one 200 ms more, a timeout
/// seconds.
const NOTIFY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of a backend's round trip (etcd answers in milliseconds).
const BACKEND_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendOpLabels {
    backend: String,
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: String,
}

type HistogramFamily<L> = Family<L, DurationHistogram, fn() -> DurationHistogram>;

/// Every metric of one registry. Shared by the API, the heartbeat and the
/// notifier.
pub struct Metrics {
    registry: Registry,
    /// The store whose table the gauges show, once there is one.
    table: Arc<std::sync::OnceLock<Arc<dyn TableSource>>>,
    registered_new: Counter,
    registered_again: Counter,
    deregistered: Counter,
    deregistered_unknown: Counter,
    heartbeat_ok: Counter,
    heartbeat_failed: Counter,
    evictions: Counter,
    evictions_withheld: Counter,
    notified: Counter,
    notify_given_up: Counter,
    notify_superseded: Counter,
    notify_failed_attempts: Counter,
    notify_latency: DurationHistogram,
    backend_round_trip: HistogramFamily<BackendOpLabels>,
    backend_leader: Family<BackendLabel, Gauge>,
    backend_leader_changes: Family<BackendLabel, Counter>,
}

impl Metrics {
    /// The metrics of a registry; its table is observed once the store
    /// that holds it exists ([`Metrics::observe_table`]).
    pub fn new() -> Self {
        let table = Arc::new(std::sync::OnceLock::new());
        let mut registry = Registry::default();
        let r = &mut registry;
        let registrations: Family<KindLabel, Counter> = register(
            r,
            "sparrow_registry_registrations",
            "Registrations accepted, by kind: new instance, or update of a known one",
        );
        let deregistrations: Family<ResultLabel, Counter> = register(
            r,
            "sparrow_registry_deregistrations",
            "Deregistrations, by result: removed, or unknown instance",
        );
        let heartbeats: Family<ResultLabel, Counter> = register(
            r,
            "sparrow_registry_heartbeats",
            "Heartbeat attempts, by result: ok (200) or failed",
        );
        let evictions = register(
            r,
            "sparrow_registry_evictions",
            "Instances evicted after their last failed heartbeat attempt",
        );
        let evictions_withheld = register(
            r,
            "sparrow_registry_evictions_withheld",
            "Evictions not made because too many instances were failing their heartbeats at once (--eviction-guard)",
        );
        let notifications: Family<ResultLabel, Counter> = register(
            r,
            "sparrow_registry_notifications",
            "Notifications to dependents, by result: delivered, failed after every attempt, or superseded (a newer change of the instance was queued, or the dependent left the table)",
        );
        let notify_failed_attempts = register(
            r,
            "sparrow_registry_notification_failed_attempts",
            "Notification attempts that got no 2xx answer (each is retried up to the attempt limit)",
        );
        let notify_latency = register_seconds(
            r,
            "sparrow_registry_notification_latency",
            "Time from a change to its delivery to one dependent, retries included",
            DurationHistogram::new(NOTIFY_BUCKETS),
        );
        let backend_round_trip: HistogramFamily<BackendOpLabels> = register_seconds(
            r,
            "sparrow_registry_backend_round_trip",
            "Round trip of one operation on the table's backend (etcd); no samples with the in-memory table",
            Family::new_with_constructor(|| DurationHistogram::new(BACKEND_BUCKETS)),
        );
        let backend_leader = register(
            r,
            "sparrow_registry_backend_leader",
            "1 while this replica leads the backend's election (etcd), else 0; no samples with the in-memory table",
        );
        let backend_leader_changes = register(
            r,
            "sparrow_registry_backend_leader_changes",
            "Leadership changes seen by this replica (etcd); no samples with the in-memory table",
        );
        registry.register_collector(Box::new(TableCollector {
            table: Arc::clone(&table),
        }));

        let kind = |kind| registrations.get_or_create(&KindLabel { kind }).clone();
        let deregistration = |result| {
            deregistrations
                .get_or_create(&ResultLabel { result })
                .clone()
        };
        let heartbeat = |result| heartbeats.get_or_create(&ResultLabel { result }).clone();
        let notification = |result| notifications.get_or_create(&ResultLabel { result }).clone();
        Metrics {
            table,
            registered_new: kind("new"),
            registered_again: kind("update"),
            deregistered: deregistration("removed"),
            deregistered_unknown: deregistration("unknown"),
            heartbeat_ok: heartbeat("ok"),
            heartbeat_failed: heartbeat("failed"),
            notified: notification("delivered"),
            notify_given_up: notification("failed"),
            notify_superseded: notification("superseded"),
            evictions,
            evictions_withheld,
            notify_failed_attempts,
            notify_latency,
            backend_round_trip,
            backend_leader,
            backend_leader_changes,
            registry,
        }
    }

    /// Shows `source`'s table from now on (the first call wins).
    pub fn observe_table(&self, source: Arc<dyn TableSource>) {
        let _ = self.table.set(source);
    }

    /// The answer to `GET /metrics`.
    pub fn scrape(&self) -> Response<Full<Bytes>> {
        scrape_response(&self.registry)
    }

    /// A registration was accepted; `updated`: the instance was known.
    pub fn registered(&self, updated: bool) {
        if updated {
            self.registered_again.inc();
        } else {
            self.registered_new.inc();
        }
    }

    /// A deregistration came; `known`: it removed an instance.
    pub fn deregistered(&self, known: bool) {
        if known {
            self.deregistered.inc();
        } else {
            self.deregistered_unknown.inc();
        }
    }

    /// One heartbeat attempt ended.
    pub fn heartbeat(&self, alive: bool) {
        if alive {
            self.heartbeat_ok.inc();
        } else {
            self.heartbeat_failed.inc();
        }
    }

    pub fn evicted(&self) {
        self.evictions.inc();
    }

    /// An instance that failed every attempt was kept: the guard held.
    pub fn eviction_withheld(&self) {
        self.evictions_withheld.inc();
    }

    /// A notification was delivered `latency` after its change.
    pub fn notification_delivered(&self, latency: Duration) {
        self.notified.inc();
        self.notify_latency.observe(latency);
    }

    /// One attempt of a notification failed (it may be retried).
    pub fn notification_attempt_failed(&self) {
        self.notify_failed_attempts.inc();
    }

    /// A notification failed every attempt and was dropped.
    pub fn notification_given_up(&self) {
        self.notify_given_up.inc();
    }

    /// A notification was dropped for a newer change of its instance.
    pub fn notification_superseded(&self) {
        self.notify_superseded.inc();
    }

    /// Hook for a table kept in a backend: one operation `op` (e.g. `put`,
    /// `delete`, `range`, `txn`) on `backend` (e.g. `etcd`) took `took`.
    pub fn backend_round_trip(&self, backend: &str, op: &str, took: Duration) {
        self.backend_round_trip
            .get_or_create(&BackendOpLabels {
                backend: backend.to_owned(),
                op: op.to_owned(),
            })
            .observe(took);
    }

    /// Hook for a replicated registry: whether this replica now leads on
    /// `backend`; a change of state counts as a leadership change.
    pub fn backend_leader(&self, backend: &str, leads: bool) {
        let label = BackendLabel {
            backend: backend.to_owned(),
        };
        let was = self
            .backend_leader
            .get_or_create(&label)
            .set(i64::from(leads));
        if was != i64::from(leads) {
            self.backend_leader_changes.get_or_create(&label).inc();
        }
    }
}

/// What the table holds, read at each scrape: instances by service and
/// health, and its size.
struct TableCollector {
    table: Arc<std::sync::OnceLock<Arc<dyn TableSource>>>,
}

impl std::fmt::Debug for TableCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableCollector")
    }
}

/// Whatever holds the registry's table (a store).
pub trait TableSource: Send + Sync + 'static {
    fn table(&self) -> &Table;
}

impl<S: crate::store::Store> TableSource for S {
    fn table(&self) -> &Table {
        crate::store::Store::table(self)
    }
}

impl Collector for TableCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(source) = self.table.get() else {
            return Ok(());
        };
        let view = source.table().view();
        let instances: usize = view.values().map(Vec::len).sum();

        let services = ConstGauge::new(view.len() as i64);
        services.encode(encoder.encode_descriptor(
            "sparrow_registry_services",
            "Services with at least one registered instance",
            None,
            services.metric_type(),
        )?)?;
        let size = ConstGauge::new(instances as i64);
        size.encode(encoder.encode_descriptor(
            "sparrow_registry_table_instances",
            "Instances in the table (its size)",
            None,
            size.metric_type(),
        )?)?;

        let mut by_health = encoder.encode_descriptor(
            "sparrow_registry_instances",
            "Registered instances, by service and health (unchecked, passing, failing)",
            None,
            MetricType::Gauge,
        )?;
        for (service, list) in &view {
            for health in [Health::Unchecked, Health::Passing, Health::Failing] {
                let n = list.iter().filter(|i| i.health == health).count();
                if n == 0 {
                    continue;
                }
                let labels = [
                    ("service", service.as_str()),
                    ("health", health_name(health)),
                ];
                ConstGauge::new(n as i64).encode(by_health.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// As `GET /services` spells it.
fn health_name(health: Health) -> &'static str {
    match health {
        Health::Unchecked => "unchecked",
        Health::Passing => "passing",
        Health::Failing => "failing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::record::ServiceRecord;

    #[test]
    fn counts_and_table_are_exposed() {
        use crate::store::Store;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let metrics = Arc::new(Metrics::new());
        let notifier = crate::notify::Notifier::new(
            protocol::http::http_client(),
            Duration::from_millis(10),
            protocol::token::Token::default(),
            16,
            Arc::clone(&metrics),
        );
        let limits = crate::Config::default().limits();
        let store = Arc::new(crate::store::memory::MemoryStore::new(notifier, limits));
        runtime.block_on(async {
            for addr in ["h:1", "h:2"] {
                store
                    .register(ServiceRecord::new("log", addr, vec![]))
                    .await
                    .unwrap();
            }
        });
        drop(runtime);
        metrics.observe_table(store.clone());
        metrics.registered(false);
        metrics.registered(true);
        metrics.heartbeat(false);
        metrics.backend_leader("etcd", true);
        metrics.backend_leader("etcd", true);
        let text = String::from_utf8(
            futures_body(metrics.scrape()), // the body of the answer
        )
        .unwrap();
        for line in [
            "sparrow_registry_registrations_total{kind=\"new\"} 1\n",
            "sparrow_registry_registrations_total{kind=\"update\"} 1\n",
            "sparrow_registry_heartbeats_total{result=\"failed\"} 1\n",
            "sparrow_registry_heartbeats_total{result=\"ok\"} 0\n",
            "sparrow_registry_instances{service=\"log\",health=\"unchecked\"} 2\n",
            "sparrow_registry_table_instances 2\n",
            "sparrow_registry_services 1\n",
            "sparrow_registry_backend_leader{backend=\"etcd\"} 1\n",
            "sparrow_registry_backend_leader_changes_total{backend=\"etcd\"} 1\n",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
    }

    fn futures_body(response: Response<Full<Bytes>>) -> Vec<u8> {
        use http_body_util::BodyExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(response.into_body().collect())
            .unwrap()
            .to_bytes()
            .to_vec()
    }
}

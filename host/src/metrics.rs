//! The host's metrics: what it counts for the service it runs, and the small
//! server that answers `GET /metrics` on `--metrics-addr`, apart from the
//! service's own address so that no path is taken from the plugin.
//!
//! Off unless `--metrics-addr` is given: then [`ServiceMetrics`] is empty and
//! every method is a branch on `None`. When on, the counters of one service
//! are resolved once, when a plugin version is installed, so that a request
//! costs a few atomic adds and allocates nothing; only the counters of an
//! outbound call's target are looked up by name (a read lock and a hash),
//! since a plugin may call any service.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use protocol::accept::{self, ServeSettings};
use protocol::body::text_response;
use protocol::locks::{lock, read, write};
use protocol::metrics::{
    DurationHistogram, METRICS_PATH, register, register_seconds, scrape_response,
};
use protocol::record::EVERY_SERVICE;
use tokio::net::TcpListener;

/// Request durations: a plugin answers in tens of microseconds, a call
/// through other services in milliseconds, a timeout in seconds.
const REQUEST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Instance set-up: microseconds from the pool, more for big plugins.
const SETUP_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

/// The `target` label of calls to services past `--metrics-max-targets`,
/// and of calls that reached no instance (or were not allowed) of a service
/// no call has reached yet: the gateway calls whatever service a client
/// names, and a label value per name would let clients grow the host's
/// memory without end, or take the places of real services.
pub const OTHER_TARGET: &str = "_other";

/// Status classes, indexed by the status's first digit minus one.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Why the plugin gave no response.
#[derive(Clone, Copy, Debug)]
pub enum FailureKind {
    Trap,
    Timeout,
    Busy,
    Setup,
}

const FAILURE_KINDS: [&str; 4] = ["trap", "timeout", "busy", "setup"];

/// What became of a call to another service (`call-service`,
/// `log-println`). `Answered` means an answer came back, whatever its status.
#[derive(Clone, Copy, Debug)]
pub enum CallOutcome {
    Answered,
    NoInstance,
    Unreachable,
    Timeout,
    NotAllowed,
}

const CALL_OUTCOMES: [&str; 5] = [
    "answered",
    "no_instance",
    "unreachable",
    "timeout",
    "not_allowed",
];

/// An operation on the plugin's key-value state.
#[derive(Clone, Copy, Debug)]
pub enum StateOp {
    Get,
    Set,
    Increment,
}

const STATE_OPS: [&str; 3] = ["get", "set", "increment"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

/// The service, and a second label named after what it says: one type for
/// every family with two labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ServiceLabels {
    service: String,
    detail: Detail,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Detail {
    Class(&'static str),
    Kind(&'static str),
    Result(&'static str),
    Op(&'static str),
}

impl EncodeLabelSet for ServiceLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let detail = match self.detail {
            Detail::Class(v) => ("class", v),
            Detail::Kind(v) => ("kind", v),
            Detail::Result(v) => ("result", v),
            Detail::Op(v) => ("op", v),
        };
        [("service", self.service.as_str()), detail].encode(encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: String,
    target: String,
    outcome: &'static str,
}

type HistogramFamily = Family<ServiceLabel, DurationHistogram, fn() -> DurationHistogram>;

/// The call targets of one service counted so far, each with one counter
/// per outcome.
type Targets = RwLock<HashMap<String, [Counter; 5]>>;

/// Every metric family of the host.
#[derive(Debug)]
pub struct HostMetrics {
    registry: Registry,
    requests: Family<ServiceLabels, Counter>,
    request_duration: HistogramFamily,
    instance_setup: HistogramFamily,
    failures: Family<ServiceLabels, Counter>,
    in_use: Family<ServiceLabel, Gauge>,
    swaps: Family<ServiceLabels, Counter>,
    calls: Family<CallLabels, Counter>,
    log_lines: Family<ServiceLabels, Counter>,
    state_ops: Family<ServiceLabels, Counter>,
    appends: Family<ServiceLabels, Counter>,
    /// Distinct call targets counted by name, per service.
    max_targets: usize,
    /// The targets of each service by name. Kept here rather than with a
    /// plugin version's counters: the family outlives the versions, and a
    /// bound counted per version would let every swap add as many labels.
    targets: Mutex<HashMap<String, Arc<Targets>>>,
}

impl HostMetrics {
    /// Metrics that count calls to at most `max_targets` services by name
    /// (per service); calls to others count as [`OTHER_TARGET`].
    pub fn new(max_targets: usize) -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        HostMetrics {
            requests: register(
                r,
                "sparrow_host_requests",
                "Requests for the plugin answered, by status class (host answers such as 413, 500, 503 and 504 included)",
            ),
            request_duration: register_seconds(
                r,
                "sparrow_host_request_duration",
                "Time from a request's head to its answer, body reading and flush included",
                Family::new_with_constructor(|| DurationHistogram::new(REQUEST_BUCKETS)),
            ),
            instance_setup: register_seconds(
                r,
                "sparrow_host_instance_setup",
                "Time to set up a fresh instance (store and instantiation); a reused one costs none",
                Family::new_with_constructor(|| DurationHistogram::new(SETUP_BUCKETS)),
            ),
            failures: register(
                r,
                "sparrow_host_plugin_failures",
                "Requests the plugin gave no response to, by kind: trap (500), timeout (504), busy (503), setup (500)",
            ),
            in_use: register(
                r,
                "sparrow_host_instances_in_use",
                "Instance slots taken by requests right now (at most --max-instances)",
            ),
            swaps: register(
                r,
                "sparrow_host_swaps",
                "Hot swaps of the plugin, by result: done, or refused (the running version kept serving)",
            ),
            calls: register(
                r,
                "sparrow_host_outbound_calls",
                "Calls from the plugin to other services, by target service and outcome (answered, no_instance, unreachable, timeout, not_allowed)",
            ),
            log_lines: register(
                r,
                "sparrow_host_log_lines",
                "Lines the plugin sent with log-println, by result: sent (the log service answered 200) or failed",
            ),
            state_ops: register(
                r,
                "sparrow_host_state_operations",
                "Operations on the plugin's key-value state, by op: get, set, increment",
            ),
            appends: register(
                r,
                "sparrow_host_file_appends",
                "files.append calls of the plugin, by result: written, or failed (nothing or not all written)",
            ),
            max_targets,
            targets: Mutex::default(),
            registry,
        }
    }

    /// The call targets `service` counted, shared by its versions.
    fn targets_of(&self, service: &str) -> Arc<Targets> {
        lock(&self.targets)
            .entry(service.to_owned())
            .or_default()
            .clone()
    }

    /// The answer to `GET /metrics`.
    pub fn scrape(&self) -> Response<Full<Bytes>> {
        scrape_response(&self.registry)
    }
}

/// The metrics of one service, resolved; empty when metrics are off.
/// Cloning shares them.
#[derive(Clone, Default)]
pub struct ServiceMetrics(Option<Arc<Resolved>>);

struct Resolved {
    service: String,
    families: Arc<HostMetrics>,
    requests: [Counter; 5],
    request_duration: DurationHistogram,
    instance_setup: DurationHistogram,
    failures: [Counter; 4],
    in_use: Gauge,
    swaps_done: Counter,
    swaps_refused: Counter,
    log_lines: [Counter; 2],
    state_ops: [Counter; 3],
    appends: [Counter; 2],
    /// Per target service, one counter per outcome.
    calls: Arc<Targets>,
    /// The services the plugin names in its requirements (`*` aside): each
    /// is counted by name from its first call, whatever its outcome.
    declared: Vec<String>,
}

impl ServiceMetrics {
    /// Nothing is counted.
    pub fn off() -> Self {
        ServiceMetrics(None)
    }

    /// The counters of `service`, which `requires` these services, in
    /// `metrics`; none when metrics are off.
    pub fn new(metrics: Option<&Arc<HostMetrics>>, service: &str, requires: &[String]) -> Self {
        let Some(families) = metrics else {
            return Self::off();
        };
        let label = ServiceLabel {
            service: service.to_owned(),
        };
        let labels = |detail| ServiceLabels {
            service: service.to_owned(),
            detail,
        };
        let counters = |family: &Family<ServiceLabels, Counter>,
                        detail: fn(&'static str) -> Detail,
                        values: &[&'static str]|
         -> Vec<Counter> {
            values
                .iter()
                .map(|v| family.get_or_create(&labels(detail(v))).clone())
                .collect()
        };
        let swaps = counters(&families.swaps, Detail::Result, &["done", "refused"]);
        ServiceMetrics(Some(Arc::new(Resolved {
            requests: array(counters(&families.requests, Detail::Class, &CLASSES)),
            request_duration: families.request_duration.get_or_create(&label).clone(),
            instance_setup: families.instance_setup.get_or_create(&label).clone(),
            failures: array(counters(&families.failures, Detail::Kind, &FAILURE_KINDS)),
            in_use: families.in_use.get_or_create(&label).clone(),
            swaps_done: swaps[0].clone(),
            swaps_refused: swaps[1].clone(),
            log_lines: array(counters(
                &families.log_lines,
                Detail::Result,
                &["sent", "failed"],
            )),
            state_ops: array(counters(&families.state_ops, Detail::Op, &STATE_OPS)),
            appends: array(counters(
                &families.appends,
                Detail::Result,
                &["written", "failed"],
            )),
            calls: families.targets_of(service),
            declared: requires
                .iter()
                .filter(|name| *name != EVERY_SERVICE)
                .cloned()
                .collect(),
            service: service.to_owned(),
            families: families.clone(),
        })))
    }

    /// A request was answered with `status` after `took`.
    pub fn request(&self, status: StatusCode, took: Duration) {
        if let Some(m) = &self.0 {
            let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
            m.requests[class].inc();
            m.request_duration.observe(took);
        }
    }

    /// A fresh instance was ready to run after `took`.
    pub fn instance_setup(&self, took: Duration) {
        if let Some(m) = &self.0 {
            m.instance_setup.observe(took);
        }
    }

    pub fn failure(&self, kind: FailureKind) {
        if let Some(m) = &self.0 {
            m.failures[kind as usize].inc();
        }
    }

    /// Counts an instance slot as taken until the guard is dropped.
    pub fn in_use(&self) -> InUse {
        if let Some(m) = &self.0 {
            m.in_use.inc();
        }
        InUse(self.0.as_ref().map(|m| m.in_use.clone()))
    }

    /// A swap away from this service's version was done or refused.
    pub fn swap(&self, done: bool) {
        if let Some(m) = &self.0 {
            if done {
                m.swaps_done.inc();
            } else {
                m.swaps_refused.inc();
            }
        }
    }

    /// A call to `target` ended with `outcome`.
    pub fn call(&self, target: &str, outcome: CallOutcome) {
        let Some(m) = &self.0 else {
            return;
        };
        if let Some(counters) = read(&m.calls).get(target) {
            counters[outcome as usize].inc();
            return;
        }
        let mut calls = write(&m.calls);
        let named = calls.len() - usize::from(calls.contains_key(OTHER_TARGET));
        // A name earns its place by a call that found an instance of it,
        // or by being named in the plugin's requirements.
        let reached = !matches!(outcome, CallOutcome::NoInstance | CallOutcome::NotAllowed)
            || m.declared.iter().any(|name| name == target);
        let key = if calls.contains_key(target) || (reached && named < m.families.max_targets) {
            target
        } else {
            OTHER_TARGET
        };
        let counters = calls.entry(key.to_owned()).or_insert_with(|| {
            CALL_OUTCOMES.map(|outcome| {
                m.families
                    .calls
                    .get_or_create(&CallLabels {
                        service: m.service.clone(),
                        target: key.to_owned(),
                        outcome,
                    })
                    .clone()
            })
        });
        counters[outcome as usize].inc();
    }

    /// A `log-println` line was sent (the log service answered 200) or not.
    pub fn log_line(&self, sent: bool) {
        if let Some(m) = &self.0 {
            m.log_lines[usize::from(!sent)].inc();
        }
    }

    pub fn state_op(&self, op: StateOp) {
        if let Some(m) = &self.0 {
            m.state_ops[op as usize].inc();
        }
    }

    /// A `files.append` wrote its data, or failed.
    pub fn append(&self, written: bool) {
        if let Some(m) = &self.0 {
            m.appends[usize::from(!written)].inc();
        }
    }
}

/// The counters of a family, one per label value, in that order.
fn array<const N: usize>(counters: Vec<Counter>) -> [Counter; N] {
    counters
        .try_into()
        .unwrap_or_else(|v: Vec<Counter>| panic!("{N} label values, {} counters", v.len()))
}

/// An instance slot in use, counted until dropped.
pub struct InUse(Option<Gauge>);

impl Drop for InUse {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}

/// Answers `GET /metrics` on `listener` until `shutdown` completes, with the
/// same connection limits and timeouts as the service's address.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<HostMetrics>,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) {
    let service_for = |_peer| {
        let metrics = metrics.clone();
        service_fn(move |request: Request<Incoming>| {
            let response = match (request.method(), request.uri().path()) {
                (&Method::GET, METRICS_PATH) => metrics.scrape(),
                (_, METRICS_PATH) => {
                    text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                }
                (_, path) => text_response(
                    StatusCode::NOT_FOUND,
                    format!("no route for {path}: metrics are on {METRICS_PATH}"),
                ),
            };
            std::future::ready(Ok::<_, Infallible>(response))
        })
    };
    accept::serve(listener, &settings, service_for, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn scrape(metrics: &HostMetrics) -> String {
        let body = metrics.scrape().into_body();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime.block_on(body.collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn counts_per_service_with_named_labels() {
        let metrics = Arc::new(HostMetrics::new(16));
        let echo = ServiceMetrics::new(Some(&metrics), "echo", &[]);
        echo.request(StatusCode::OK, Duration::from_micros(50));
        echo.request(StatusCode::GATEWAY_TIMEOUT, Duration::from_secs(1));
        echo.failure(FailureKind::Timeout);
        echo.call("log", CallOutcome::Answered);
        echo.call("log", CallOutcome::Answered);
        echo.call("visit", CallOutcome::NoInstance);
        let visit = ServiceMetrics::new(Some(&metrics), "visit", &["log".into()]);
        visit.call("log", CallOutcome::NoInstance);
        echo.log_line(true);
        echo.state_op(StateOp::Increment);
        echo.swap(false);
        let held = echo.in_use();
        let text = scrape(&metrics);
        for line in [
            "sparrow_host_requests_total{service=\"echo\",class=\"2xx\"} 1\n",
            "sparrow_host_requests_total{service=\"echo\",class=\"5xx\"} 1\n",
            "sparrow_host_request_duration_seconds_count{service=\"echo\"} 2\n",
            "sparrow_host_plugin_failures_total{service=\"echo\",kind=\"timeout\"} 1\n",
            "sparrow_host_outbound_calls_total{service=\"echo\",target=\"log\",outcome=\"answered\"} 2\n",
            "sparrow_host_outbound_calls_total{service=\"echo\",target=\"_other\",outcome=\"no_instance\"} 1\n",
            "sparrow_host_outbound_calls_total{service=\"visit\",target=\"log\",outcome=\"no_instance\"} 1\n",
            "sparrow_host_log_lines_total{service=\"echo\",result=\"sent\"} 1\n",
            "sparrow_host_state_operations_total{service=\"echo\",op=\"increment\"} 1\n",
            "sparrow_host_swaps_total{service=\"echo\",result=\"refused\"} 1\n",
            "sparrow_host_instances_in_use{service=\"echo\"} 1\n",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
        drop(held);
        assert!(scrape(&metrics).contains("sparrow_host_instances_in_use{service=\"echo\"} 0\n"));
    }

    /// The count of `outcome` calls from the gateway to `target`.
    fn count(text: &str, target: &str, outcome: &str) -> Option<String> {
        let line = format!(
            "sparrow_host_outbound_calls_total{{service=\"gateway\",target=\"{target}\",outcome=\"{outcome}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .map(|v| v.to_owned())
    }

    #[test]
    fn call_targets_past_the_bound_count_as_other() {
        let metrics = Arc::new(HostMetrics::new(2));
        let gateway = ServiceMetrics::new(Some(&metrics), "gateway", &[]);
        for target in ["a", "b", "c", "d", "a"] {
            gateway.call(target, CallOutcome::Answered);
        }
        let text = scrape(&metrics);
        let count = |target: &str| count(&text, target, "answered");
        assert_eq!(count("a").as_deref(), Some("2"));
        assert_eq!(count("b").as_deref(), Some("1"));
        assert_eq!(count(OTHER_TARGET).as_deref(), Some("2"));
        assert_eq!(count("c"), None);
    }

    /// Names a client makes up reach no instance: they take no place from
    /// the services that come later (an audit filled every place with 256
    /// made-up names through the gateway).
    #[test]
    fn calls_to_services_never_reached_take_no_place() {
        let metrics = Arc::new(HostMetrics::new(2));
        let gateway = ServiceMetrics::new(Some(&metrics), "gateway", &[]);
        for n in 0..10 {
            gateway.call(&format!("made-up-{n}"), CallOutcome::NoInstance);
        }
        gateway.call("denied", CallOutcome::NotAllowed);
        gateway.call("log", CallOutcome::Answered);
        // Once reached, a service's calls without an instance count as its.
        gateway.call("log", CallOutcome::NoInstance);
        let text = scrape(&metrics);
        assert_eq!(count(&text, "log", "answered").as_deref(), Some("1"));
        assert_eq!(count(&text, "log", "no_instance").as_deref(), Some("1"));
        assert_eq!(
            count(&text, OTHER_TARGET, "no_instance").as_deref(),
            Some("10")
        );
        assert_eq!(
            count(&text, OTHER_TARGET, "not_allowed").as_deref(),
            Some("1")
        );
        assert_eq!(count(&text, "made-up-0", "no_instance"), None);
    }

    #[test]
    fn the_bound_on_call_targets_holds_across_versions_of_a_service() {
        let metrics = Arc::new(HostMetrics::new(2));
        for version in 0..3 {
            let gateway = ServiceMetrics::new(Some(&metrics), "gateway", &[]);
            for n in 0..3 {
                gateway.call(&format!("v{version}-{n}"), CallOutcome::Answered);
            }
        }
        // Another service has a bound of its own.
        ServiceMetrics::new(Some(&metrics), "visit", &[]).call("log", CallOutcome::Answered);
        let text = scrape(&metrics);
        let targets = |service: &str| {
            let prefix =
                format!("sparrow_host_outbound_calls_total{{service=\"{service}\",target=\"");
            let mut targets: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&prefix)?.split('"').next())
                .collect();
            targets.sort_unstable();
            targets.dedup();
            targets
        };
        assert_eq!(targets("gateway"), [OTHER_TARGET, "v0-0", "v0-1"], "{text}");
        assert_eq!(targets("visit"), ["log"], "{text}");
    }

    #[test]
    fn off_counts_nothing() {
        let off = ServiceMetrics::off();
        off.request(StatusCode::OK, Duration::ZERO);
        off.call("log", CallOutcome::Timeout);
        drop(off.in_use());
    }
}

//! Metrics plumbing that the registry and the host share: a histogram of
//! durations kept in atomics, and the answer to a scrape in the Prometheus
//! text format (version 0.0.4). Which metrics exist is each server's own
//! business (`registry/src/metrics.rs`, `host/src/metrics.rs`).
//!
//! `prometheus-client`'s own histogram takes a mutex on every observation;
//! this one is a few relaxed atomic adds, since the host observes on every
//! request. The crate still does all of the encoding.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::body::text_response;

/// The path both servers answer scrapes on.
pub const METRICS_PATH: &str = "/metrics";

/// Registers a new `M` under `name` and returns a handle to it: a clone,
/// which shares the samples the registry encodes.
pub fn register<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

/// Registers `metric`, whose samples are in seconds, under `name`.
pub fn register_seconds<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register_with_unit(name, help, Unit::Seconds, metric.clone());
    metric
}

/// A histogram of durations, in seconds on the wire. Cloning shares it.
#[derive(Clone, Debug)]
pub struct DurationHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, in seconds as exposed and in nanoseconds as compared.
    bounds: Box<[f64]>,
    bounds_ns: Box<[u64]>,
    /// One count per bound, plus the `+Inf` bucket; not cumulative.
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl DurationHistogram {
    /// `bounds` are the buckets' upper bounds in seconds, ascending.
    pub fn new(bounds: &[f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        DurationHistogram {
            inner: Arc::new(Inner {
                bounds: bounds.into(),
                bounds_ns: bounds.iter().map(|s| (s * 1e9) as u64).collect(),
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_ns: AtomicU64::new(0),
            }),
        }
    }

    pub fn observe(&self, duration: Duration) {
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let inner = &*self.inner;
        // A dozen bounds: a linear scan beats a binary search here.
        let bucket = inner
            .bounds_ns
            .iter()
            .position(|&bound| ns <= bound)
            .unwrap_or(inner.bounds_ns.len());
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        inner.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' sum, so that `+Inf` always equals it
        // even while observations land during the scrape.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = inner.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The answer to `GET /metrics`: everything in `registry`, as text.
pub fn scrape_response(registry: &Registry) -> Response<Full<Bytes>> {
    let mut text = String::with_capacity(8 * 1024);
    if let Err(e) = prometheus_text::encode(&mut text, registry) {
        return text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}"),
        );
    }
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_sum_and_count() {
        let histogram = DurationHistogram::new(&[0.001, 0.01]);
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_millis(1));
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_secs(2));
        assert_eq!(histogram.count(), 4);

        let mut registry = Registry::default();
        registry.register("t_seconds", "test", histogram);
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).unwrap();
        for line in [
            "t_seconds_bucket{le=\"0.001\"} 2\n",
            "t_seconds_bucket{le=\"0.01\"} 3\n",
            "t_seconds_bucket{le=\"+Inf\"} 4\n",
            "t_seconds_sum 2.0065\n",
            "t_seconds_count 4\n",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
    }
}

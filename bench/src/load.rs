//! The load generator: a fixed number of keep-alive HTTP/1 connections
//! (hyper's client connection API), each sending its next request as soon as
//! the previous answer is read, for a bounded time or a bounded count. Every
//! latency is kept; percentiles come from the sorted list.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Makes the body of request number `n` (from 0).
pub type BodyFn = Arc<dyn Fn(u64) -> Bytes + Send + Sync>;

/// What every request of a run looks like.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub method: Method,
    pub path: String,
    pub body: BodyFn,
}

impl Target {
    pub fn get(addr: SocketAddr, path: &str) -> Self {
        Target {
            addr,
            method: Method::GET,
            path: path.into(),
            body: Arc::new(|_| Bytes::new()),
        }
    }

    pub fn post(addr: SocketAddr, path: &str, body: BodyFn) -> Self {
        Target {
            method: Method::POST,
            body,
            ..Target::get(addr, path)
        }
    }

    fn request(&self, n: u64) -> Request<Full<Bytes>> {
        let body = (self.body)(n);
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header(header::HOST, self.addr.to_string());
        if !body.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        request.body(Full::new(body)).expect("a valid request")
    }
}

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// Load for `warmup` unmeasured, then for `measure` measured.
    Timed { warmup: Duration, measure: Duration },
    /// Exactly this many requests, all measured.
    Count(u64),
}

/// What a run measured.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Answers with a 2xx status within the measured window.
    pub ok: u64,
    /// Failed requests and non-2xx answers within the window.
    pub errors: u64,
    /// The measured window.
    pub elapsed: Duration,
    /// Latencies of the successful requests, sorted.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One outcome of several runs: their counts, windows and latencies
    /// together.
    pub fn merge(parts: impl IntoIterator<Item = Outcome>) -> Outcome {
        let mut all = Outcome::default();
        for part in parts {
            all.ok += part.ok;
            all.errors += part.errors;
            all.elapsed += part.elapsed;
            all.latencies.extend(part.latencies);
        }
        all.latencies.sort_unstable();
        all
    }

    /// The `p`-th percentile latency (0 < p ≤ 100).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }
}

/// What the workers share.
struct Plan {
    target: Target,
    budget: Budget,
    /// When measuring starts and ends (timed budgets).
    window: (Instant, Instant),
    /// The next request number.
    next: AtomicU64,
}

/// Runs `connections` connections against `target` for `budget`.
pub async fn run(target: Target, connections: usize, budget: Budget) -> anyhow::Result<Outcome> {
    let now = Instant::now();
    let window = match budget {
        Budget::Timed { warmup, measure } => (now + warmup, now + warmup + measure),
        Budget::Count(_) => (now, now + Duration::from_secs(3600)),
    };
    let plan = Arc::new(Plan {
        target,
        budget,
        window,
        next: AtomicU64::new(0),
    });
    let workers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(worker(plan.clone())))
        .collect();
    let mut parts = Vec::with_capacity(workers.len());
    for w in workers {
        parts.push(w.await?);
    }
    let mut outcome = Outcome::merge(parts);
    outcome.elapsed = match budget {
        Budget::Timed { measure, .. } => measure,
        Budget::Count(_) => now.elapsed(),
    };
    if outcome.ok == 0 {
        anyhow::bail!(
            "no successful request to {} ({} errors)",
            plan.target.addr,
            outcome.errors
        );
    }
    Ok(outcome)
}

async fn worker(plan: Arc<Plan>) -> Outcome {
    let mut part = Outcome::default();
    let (start, end) = plan.window;
    let mut connection: Option<SendRequest<Full<Bytes>>> = None;
    loop {
        let n = plan.next.fetch_add(1, Ordering::Relaxed);
        match plan.budget {
            Budget::Count(count) if n >= count => return part,
            Budget::Timed { .. } if Instant::now() >= end => return part,
            _ => {}
        }
        let sent = Instant::now();
        let ok = match exchange(&plan.target, &mut connection, n).await {
            Ok(ok) => ok,
            Err(_) => {
                connection = None;
                false
            }
        };
        let done = Instant::now();
        if sent >= start && done <= end {
            if ok {
                part.ok += 1;
                part.latencies.push(done - sent);
            } else {
                part.errors += 1;
            }
        }
        if !ok && connection.is_none() {
            // Do not spin on a refused connection.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Sends request `n` on the worker's connection (opened if needed) and reads
/// the whole answer; true for a 2xx.
async fn exchange(
    target: &Target,
    connection: &mut Option<SendRequest<Full<Bytes>>>,
    n: u64,
) -> anyhow::Result<bool> {
    if connection.as_ref().is_none_or(|c| c.is_closed()) {
        *connection = Some(connect(target.addr).await?);
    }
    let sender = connection.as_mut().expect("connected");
    sender.ready().await?;
    let response = sender.send_request(target.request(n)).await?;
    let ok = response.status().is_success();
    response.into_body().collect().await?;
    Ok(ok)
}

/// Opens one HTTP/1 connection; its driver runs as a task.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

//! `host-overhead` (and `memory`): an echo plugin in a host, a fresh instance
//! per request, against a plain hyper server giving the same answers; same
//! client, same 32 keep-alive connections. The plugin is the plain echo;
//! the `echo` test stub, which imports twice as much, and the plain echo
//! under `--reuse` get a row each, and so does the plain echo with metrics
//! on (`--metrics-addr`) against off, measured right after it. The host's
//! resident memory is sampled idle and during this load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use harness::{Proc, TempDir, usage};
use http::Method;

use crate::Settings;
use crate::client;
use crate::load::{self, Budget, Outcome, Target};
use crate::procs;
use crate::report::{self, Row};

const BODY: &[u8] = b"hello, sparrow";

/// Requests per instance in the `--reuse` run.
const REUSE: u32 = 1000;

/// What one server did under load.
pub struct Measured {
    pub outcome: Outcome,
    /// CPU time the server process used per answered request.
    pub cpu_per_request: Duration,
    pub rss_idle: u64,
    pub rss_peak: u64,
}

pub async fn run(settings: &Settings, overhead: bool, memory: bool) -> anyhow::Result<Vec<Row>> {
    let registry = procs::registry(settings, &[])?;
    let cache = TempDir::try_new("cache")?;
    let cache_dir = cache.path().display().to_string();
    let start_host = |plugin: &str, extra: &[&str]| -> anyhow::Result<Proc> {
        let mut args = vec!["--cache-dir", cache_dir.as_str()];
        args.extend_from_slice(extra);
        procs::host(
            settings,
            &settings.artifacts.stub(plugin)?,
            &registry,
            &args,
        )
    };
    let host = start_host("plain-echo", &[])?;
    let baseline = procs::baseline(settings)?;
    let baseline_answer = echo_once(&baseline).await.context("baseline")?;
    // Same answer from all, or the comparison means nothing.
    let same_answer = async |server: &Proc| -> anyhow::Result<()> {
        let answer = echo_once(server).await.context("host")?;
        ensure!(
            answer == baseline_answer,
            "host and baseline answer differently: {answer:?} vs {baseline_answer:?}"
        );
        Ok(())
    };
    same_answer(&host).await?;

    let budget = Budget::Timed {
        warmup: settings.warmup,
        measure: settings.measure,
    };
    let base = measure(&baseline, settings.connections, budget).await?;
    let hosted = measure(&host, settings.connections, budget).await?;
    let metered = if overhead {
        // Off, on, off, on: the machine's load drifts over a run, and
        // alternating puts the drift on both sides alike.
        let metered = start_host("plain-echo", &["--metrics-addr", "127.0.0.1:0"])?;
        same_answer(&metered).await?;
        let on = measure(&metered, settings.connections, budget).await?;
        let off_again = measure(&host, settings.connections, budget).await?;
        let on_again = measure(&metered, settings.connections, budget).await?;
        check_counted(&metered, on.outcome.ok + on_again.outcome.ok).await?;
        Some(MetricsOnOff {
            on: Pooled::of(&[&on, &on_again]),
            off: Pooled::of(&[&hosted, &off_again]),
        })
    } else {
        None
    };
    let (stub_echo, reused) = if overhead {
        // The `echo` test stub imports twice the interfaces, and a fresh
        // instance pays for each import.
        let stub_host = start_host("echo", &[])?;
        same_answer(&stub_host).await?;
        let stub_echo = measure(&stub_host, settings.connections, budget).await?;
        // The opt-in trade: one instance for up to REUSE requests.
        let reusing = start_host("plain-echo", &["--reuse", &REUSE.to_string()])?;
        let reused = measure(&reusing, settings.connections, budget).await?;
        (Some(stub_echo), Some(reused))
    } else {
        (None, None)
    };

    let mut rows = Vec::new();
    if overhead {
        let case = "host-overhead";
        let (h, b) = (&hosted.outcome, &base.outcome);
        let mut throughput = |metric: &str, m: &Measured| {
            rows.push(Row::compared(
                case,
                metric,
                report::rate(m.outcome.rate()),
                report::rate(b.rate()),
                m.outcome.rate() / b.rate(),
            ));
        };
        throughput("throughput, plain echo, 32 conns (host/hyper)", &hosted);
        if let Some(m) = &stub_echo {
            throughput("throughput, `echo` test stub (host/hyper)", m);
        }
        if let Some(m) = &reused {
            throughput(&format!("throughput with --reuse {REUSE} (host/hyper)"), m);
        }
        if let Some(MetricsOnOff { on, off }) = &metered {
            rows.push(Row::compared(
                case,
                "throughput with --metrics-addr (metrics on/off, 2 runs each)",
                report::rate(on.rate),
                report::rate(off.rate),
                on.rate / off.rate,
            ));
            rows.push(Row::durations(
                case,
                "server CPU per request, metrics on/off",
                on.cpu_per_request,
                off.cpu_per_request,
            ));
        }
        rows.extend(Row::latencies(case, h, b));
        rows.push(Row::durations(
            case,
            "server CPU per request",
            hosted.cpu_per_request,
            base.cpu_per_request,
        ));
        rows.push(Row::new(
            case,
            "errors (host / hyper)",
            format!("{} / {}", h.errors, b.errors),
        ));
    }
    if memory {
        let case = "memory";
        rows.push(Row::sizes(
            case,
            "RSS idle (host/hyper)",
            hosted.rss_idle,
            base.rss_idle,
        ));
        rows.push(Row::sizes(
            case,
            "RSS peak under load",
            hosted.rss_peak,
            base.rss_peak,
        ));
        rows.push(Row::new(
            case,
            "host RSS after load",
            report::mib(host.rss_bytes()?),
        ));
    }
    Ok(rows)
}

/// The same host measured with metrics on and off.
struct MetricsOnOff {
    on: Pooled,
    off: Pooled,
}

/// Several measurements of one server taken as one.
struct Pooled {
    rate: f64,
    cpu_per_request: Duration,
}

impl Pooled {
    fn of(runs: &[&Measured]) -> Pooled {
        let ok: u64 = runs.iter().map(|m| m.outcome.ok).sum();
        let elapsed: f64 = runs.iter().map(|m| m.outcome.elapsed.as_secs_f64()).sum();
        let cpu: Duration = runs
            .iter()
            .map(|m| m.cpu_per_request * m.outcome.ok.max(1) as u32)
            .sum();
        Pooled {
            rate: ok as f64 / elapsed.max(1e-9),
            cpu_per_request: cpu / ok.max(1) as u32,
        }
    }
}

/// The host with metrics on counted at least the `ok` answers of the
/// measurement: the figure is for a host that really counts.
async fn check_counted(host: &Proc, ok: u64) -> anyhow::Result<()> {
    let addr = harness::listening::parse_metrics(&host.log())
        .context("the host logged no `metrics on` line")?;
    let reply = client::send(Method::GET, &format!("http://{addr}/metrics"), Bytes::new()).await?;
    ensure!(
        reply.status == 200,
        "GET /metrics answered {}",
        reply.status
    );
    let text = reply.text();
    let counted: f64 = text
        .lines()
        .find(|l| l.starts_with("sparrow_host_requests_total{") && l.contains("\"2xx\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .context("no count of 2xx answers in /metrics")?;
    ensure!(
        counted >= ok as f64,
        "metrics counted {counted} answers, the load got {ok}"
    );
    Ok(())
}

async fn echo_once(server: &Proc) -> anyhow::Result<(u16, Bytes)> {
    let reply = client::send(Method::POST, &server.url("/echo"), Bytes::from_static(BODY)).await?;
    Ok((reply.status, reply.body))
}

/// Loads `server` with the echo's request; see [`measure_target`].
async fn measure(server: &Proc, connections: usize, budget: Budget) -> anyhow::Result<Measured> {
    let target = Target::post(
        server.addr(),
        "/echo",
        Arc::new(|_| Bytes::from_static(BODY)),
    );
    measure_target(server, target, connections, budget).await
}

/// Loads `server` with `target`, sampling its memory every 50 ms and its
/// CPU time around the measured window.
pub async fn measure_target(
    server: &Proc,
    target: Target,
    connections: usize,
    budget: Budget,
) -> anyhow::Result<Measured> {
    let rss_idle = server.rss_bytes()?;
    let peak = Arc::new(AtomicU64::new(rss_idle));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop, pid) = (peak.clone(), stop.clone(), server.pid());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(rss) = usage::rss_bytes(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let Budget::Timed { warmup, .. } = budget else {
        unreachable!("host-overhead runs for a time")
    };
    // CPU time over the measured window only: read it when warm-up ends.
    let cpu_at_window = {
        let pid = server.pid();
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            usage::cpu_time(pid)
        })
    };
    let outcome = load::run(target, connections, budget).await?;
    let cpu_after = server.cpu_time()?;
    stop.store(true, Ordering::Relaxed);
    sampler.await?;
    let cpu = cpu_after.saturating_sub(cpu_at_window.await??);
    Ok(Measured {
        cpu_per_request: cpu / outcome.ok.max(1) as u32,
        outcome,
        rss_idle,
        rss_peak: peak.load(Ordering::Relaxed),
    })
}

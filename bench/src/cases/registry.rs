//! `registry`: how fast the registry takes registrations, how long one
//! heartbeat sweep over 10,000 instances takes (against the default 30 s
//! interval), and how long until 1,000 dependents are told of a new instance
//! they need (against a 1 s target), and how fast the 10,000 deregister.
//! The instances and dependents are fakes served by this process, one
//! loopback listener each. Then the same with the table in etcd
//! (`registry_etcd.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use harness::{Behaviour, Deadline, FakeService, Launch, Proc};
use http::Method;

use crate::Settings;
use crate::client;
use crate::load::{self, Budget, Target};
use crate::procs::fd_limit;
use crate::report::{self, Row};

const CASE: &str = "registry";
/// The registry's default heartbeat interval, what a sweep must fit in.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// What a notification fan-out should stay under.
const FAN_OUT_TARGET: Duration = Duration::from_secs(1);
/// The registry's debug line at the start of each heartbeat sweep.
const SWEEP_MARK: &str = "heartbeat sweep";

/// The sweep lines the registry logged, each with the time it was read.
type Sweeps = Arc<Mutex<Vec<(Instant, String)>>>;

pub async fn run(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let (n, d) = (settings.sweep_instances, settings.dependents);
    // Listeners, plus the connections in flight and everything else.
    let needed = (n + d + 1 + 1000) as u64;
    if fd_limit() < needed {
        bail!(
            "{n} fake instances need about {needed} open files; the limit is {}",
            fd_limit()
        );
    }
    let fakes = start_fakes(n + d + 1).await?;
    let interval = humantime(settings.heartbeat_interval);
    let sweeps = Sweeps::default();
    let registry = {
        let sweeps = Arc::clone(&sweeps);
        Launch::registry(settings.artifacts.binary("registry")?, "127.0.0.1:0")
            .args(["--heartbeat-interval", &interval])
            .args(["--max-instances", &table_size(settings).to_string()])
            .rust_log("info,registry::heartbeat=debug")
            .watch(move |line| {
                if line.contains(SWEEP_MARK) {
                    let mut sweeps = sweeps.lock().unwrap();
                    sweeps.push((Instant::now(), line.to_owned()));
                }
            })
            .start()?
    };
    let mut rows = Vec::new();

    // Registrations: N distinct records, 32 at a time.
    let instances = Arc::new(addrs(&fakes[..n]));
    let registered = register(
        &registry,
        Arc::clone(&instances),
        "bench-instance",
        &[],
        settings,
    )
    .await?;
    let registered_at = Instant::now();
    rows.push(Row::new(
        CASE,
        &format!("registrations ({n} distinct, 32 conns)"),
        report::per_second(registered.rate(), "reg"),
    ));
    rows.push(Row::new(
        CASE,
        "registration latency p50 / p99",
        format!(
            "{} / {}",
            report::duration(registered.percentile(50.0)),
            report::duration(registered.percentile(99.0))
        ),
    ));

    // One sweep over all of them: the registry logs its start.
    let sweep_started = wait_for_sweep(&sweeps, n, registered_at, settings).await?;
    let sweep = sweep_duration(&fakes, n, sweep_started).await?;
    rows.push(Row::compared(
        CASE,
        &format!("heartbeat sweep over {n} instances (vs 30 s interval)"),
        report::duration(sweep),
        report::duration(DEFAULT_INTERVAL),
        sweep.as_secs_f64() / DEFAULT_INTERVAL.as_secs_f64(),
    ));

    let fan_out = fan_out(&registry, &fakes, n, d, settings).await?;
    rows.push(Row::compared(
        CASE,
        &format!("register → all {d} dependents notified (vs 1 s target)"),
        report::duration(fan_out),
        report::duration(FAN_OUT_TARGET),
        fan_out.as_secs_f64() / FAN_OUT_TARGET.as_secs_f64(),
    ));

    // The N instances leave in the order they came, as when a sweep evicts
    // many instances of one service: each removal keeps the rest in order.
    let deregistered = send_records(
        &registry,
        instances,
        "bench-instance",
        &[],
        Method::DELETE,
        settings,
    )
    .await?;
    rows.push(Row::compared(
        CASE,
        &format!("deregistrations ({n} of one service, in the order they came) (vs registrations)"),
        report::per_second(deregistered.rate(), "dereg"),
        report::per_second(registered.rate(), "reg"),
        deregistered.rate() / registered.rate(),
    ));
    drop(registry);

    // The same with the table in etcd, against these in-memory figures.
    let in_memory = super::registry_etcd::InMemory {
        registrations_per_second: registered.rate(),
        fan_out,
    };
    rows.extend(super::registry_etcd::run(settings, &fakes, &in_memory).await);
    Ok(rows)
}

/// D dependents (fakes after the first `n`) require `bench-x`; then
/// `bench-x` registers: how long until the last dependent is told.
pub(super) async fn fan_out(
    registry: &Proc,
    fakes: &[FakeService],
    n: usize,
    d: usize,
    settings: &Settings,
) -> anyhow::Result<Duration> {
    let dependents = Arc::new(addrs(&fakes[n..n + d]));
    register(
        registry,
        dependents,
        "bench-dependent",
        &["bench-x"],
        settings,
    )
    .await?;
    for fake in fakes {
        fake.clear();
    }
    let x = record("bench-x", &fakes[n + d].addr, &[]);
    let posted = Instant::now();
    let status = client::send(Method::POST, &registry.url("/services"), x)
        .await?
        .status;
    ensure!(status == 200, "registering bench-x answered {status}");
    // Each fake notes when its notification came: how often this looks
    // only costs CPU, which the registry needs.
    let firsts = || -> Vec<Instant> {
        fakes[n..n + d]
            .iter()
            .filter_map(FakeService::first_notification)
            .collect()
    };
    let last = Deadline::after(Duration::from_secs(30))
        .every(Duration::from_millis(10))
        .poll_async(|| async {
            let firsts = firsts();
            (firsts.len() == d)
                .then(|| firsts.into_iter().max())
                .flatten()
        })
        .await;
    let Some(last) = last else {
        bail!(
            "only {} of {d} dependents notified within 30 s",
            firsts().len()
        );
    };
    Ok(last - posted)
}

/// `count` fake instances, each on its own port of 127.0.0.1.
async fn start_fakes(count: usize) -> anyhow::Result<Vec<FakeService>> {
    let mut fakes = Vec::with_capacity(count);
    for started in 0..count {
        let fake = FakeService::try_start_on("127.0.0.1", Behaviour::Healthy)
            .await
            .with_context(|| format!("starting fake instance {} of {count}", started + 1))?;
        fakes.push(fake);
    }
    Ok(fakes)
}

pub(super) fn addrs(fakes: &[FakeService]) -> Vec<String> {
    fakes.iter().map(|fake| fake.addr.clone()).collect()
}

/// The instances the case registers at once: N, the dependents and
/// `bench-x`; the registry's `--max-instances` must let them all in (its
/// default, 10,000, is N's).
pub fn table_size(settings: &Settings) -> usize {
    settings.sweep_instances + settings.dependents + 1
}

fn record(name: &str, addr: &str, requires: &[&str]) -> Bytes {
    serde_json::json!({"Name": name, "Addr": addr, "RequiredServices": requires})
        .to_string()
        .into()
}

/// Registers one record per address, as `name`, with 32 connections.
pub(super) async fn register(
    registry: &Proc,
    addrs: Arc<Vec<String>>,
    name: &'static str,
    requires: &'static [&'static str],
    settings: &Settings,
) -> anyhow::Result<load::Outcome> {
    send_records(registry, addrs, name, requires, Method::POST, settings).await
}

/// Sends one record per address, as `name`, in the order of `addrs`, with
/// `method` (`POST` registers, `DELETE` deregisters) and 32 connections.
async fn send_records(
    registry: &Proc,
    addrs: Arc<Vec<String>>,
    name: &'static str,
    requires: &'static [&'static str],
    method: Method,
    settings: &Settings,
) -> anyhow::Result<load::Outcome> {
    let count = addrs.len() as u64;
    let body = Arc::new(move |i: u64| record(name, &addrs[i as usize], requires));
    let target = Target {
        method: method.clone(),
        ..Target::post(registry.addr(), "/services", body)
    };
    let outcome = load::run(target, settings.connections, Budget::Count(count)).await?;
    ensure!(
        outcome.errors == 0 && outcome.ok == count,
        "{} of {count} {method} /services failed",
        outcome.errors
    );
    Ok(outcome)
}

/// Waits for the registry's first sweep over all `n` instances that starts
/// after `after`; when it logged its start.
async fn wait_for_sweep(
    sweeps: &Sweeps,
    n: usize,
    after: Instant,
    settings: &Settings,
) -> anyhow::Result<Instant> {
    let needle = format!("instances={n}");
    let timeout = settings.heartbeat_interval * 2 + Duration::from_secs(30);
    let started = Deadline::after(timeout)
        .every(Duration::from_millis(5))
        .poll_async(|| async {
            let sweeps = sweeps.lock().unwrap();
            sweeps
                .iter()
                .find(|(at, line)| *at >= after && line.contains(&needle))
                .map(|(at, _)| *at)
        })
        .await;
    match started {
        Some(at) => Ok(at),
        None => bail!(
            "no heartbeat sweep over {n} instances logged: {:?}",
            sweeps.lock().unwrap()
        ),
    }
}

/// From the first to the last heartbeat of the sweep that started (was
/// logged) at `started`: each instance's first heartbeat since shortly
/// before then.
async fn sweep_duration(
    fakes: &[FakeService],
    n: usize,
    started: Instant,
) -> anyhow::Result<Duration> {
    // The log line is read a little after the sweep began.
    let since = started - Duration::from_millis(200);
    let firsts = || -> Vec<Instant> {
        fakes[..n]
            .iter()
            .filter_map(|fake| fake.first_heartbeat_since(since))
            .collect()
    };
    let reached = Deadline::after(DEFAULT_INTERVAL * 2)
        .poll_async(|| async {
            let firsts = firsts();
            let first = firsts.iter().min()?;
            let last = firsts.iter().max()?;
            (firsts.len() == n).then(|| *last - *first)
        })
        .await;
    reached.with_context(|| format!("the sweep reached only {} of {n} instances", firsts().len()))
}

fn humantime(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

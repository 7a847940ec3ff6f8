//! `registry`: how fast the registry takes registrations, how long one
//! heartbeat sweep over 10,000 instances takes (against the default 30 s
//! interval), and how long until 1,000 dependents are told of a new instance
//! they need (against a 1 s target). The instances and dependents are fakes
//! served by this process, one loopback listener each. Then the same with
//! the table in etcd (`registry_etcd.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use bytes::Bytes;
use http::Method;

use crate::Settings;
use crate::client;
use crate::fake::Fakes;
use crate::load::{self, Budget, Target};
use crate::procs::{Proc, fd_limit};
use crate::report::{self, Row};

const CASE: &str = "registry";
/// The registry's default heartbeat interval, what a sweep must fit in.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// What a notification fan-out should stay under.
const FAN_OUT_TARGET: Duration = Duration::from_secs(1);

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
    let fakes = Fakes::start(n + d + 1).await?;
    let interval = humantime(settings.heartbeat_interval);
    let registry = Proc::registry(settings, &["--heartbeat-interval", &interval])?;
    let mut rows = Vec::new();

    // Registrations: N distinct records, 32 at a time.
    let instances = Arc::new(fakes.addrs[..n].to_vec());
    let registered = register(&registry, instances, "bench-instance", &[], settings).await?;
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
    let sweep_started = wait_for_sweep(&registry, n, registered_at, settings).await?;
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
    fakes: &Fakes,
    n: usize,
    d: usize,
    settings: &Settings,
) -> anyhow::Result<Duration> {
    let dependents = Arc::new(fakes.addrs[n..n + d].to_vec());
    register(
        registry,
        dependents,
        "bench-dependent",
        &["bench-x"],
        settings,
    )
    .await?;
    fakes.clear();
    let x = record("bench-x", fakes.addrs[n + d], &[]);
    let posted = Instant::now();
    let (status, _) = client::send(Method::POST, &registry.url("/services"), x).await?;
    ensure!(status == 200, "registering bench-x answered {status}");
    let deadline = posted + Duration::from_secs(30);
    while fakes.notified.load(Ordering::SeqCst) < d {
        if Instant::now() > deadline {
            bail!(
                "only {} of {d} dependents notified within 30 s",
                fakes.notified.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let last = fakes.seen[n..n + d]
        .iter()
        .filter_map(|s| s.notifications.lock().unwrap().first().copied())
        .max()
        .expect("every dependent was notified");
    Ok(last - posted)
}

fn record(name: &str, addr: SocketAddr, requires: &[&str]) -> Bytes {
    serde_json::json!({"Name": name, "Addr": addr.to_string(), "RequiredServices": requires})
        .to_string()
        .into()
}

/// Registers one record per address, as `name`, with 32 connections.
pub(super) async fn register(
    registry: &Proc,
    addrs: Arc<Vec<SocketAddr>>,
    name: &'static str,
    requires: &'static [&'static str],
    settings: &Settings,
) -> anyhow::Result<load::Outcome> {
    let count = addrs.len() as u64;
    let body = Arc::new(move |i: u64| record(name, addrs[i as usize], requires));
    let target = Target::post(registry.addr(), "/services", body);
    let outcome = load::run(target, settings.connections, Budget::Count(count)).await?;
    ensure!(
        outcome.errors == 0 && outcome.ok == count,
        "{} of {count} registrations failed",
        outcome.errors
    );
    Ok(outcome)
}

/// Waits for the registry's first sweep over all `n` instances that starts
/// after `after`; when it logged its start.
async fn wait_for_sweep(
    registry: &Proc,
    n: usize,
    after: Instant,
    settings: &Settings,
) -> anyhow::Result<Instant> {
    let needle = format!("instances={n}");
    let deadline = Instant::now() + settings.heartbeat_interval * 2 + Duration::from_secs(30);
    loop {
        let marks = registry.marks();
        if let Some((at, _)) = marks
            .iter()
            .find(|(at, line)| *at >= after && line.contains(&needle))
        {
            return Ok(*at);
        }
        if Instant::now() > deadline {
            bail!("no heartbeat sweep over {n} instances logged: {marks:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// From the first to the last heartbeat of the sweep that started (was
/// logged) at `started`: each instance's first heartbeat since shortly
/// before then.
async fn sweep_duration(fakes: &Fakes, n: usize, started: Instant) -> anyhow::Result<Duration> {
    // The log line is read a little after the sweep began.
    let since = started - Duration::from_millis(200);
    let deadline = Instant::now() + DEFAULT_INTERVAL * 2;
    loop {
        let firsts: Vec<Instant> = fakes.seen[..n]
            .iter()
            .filter_map(|s| {
                let beats = s.heartbeats.lock().unwrap();
                beats.iter().copied().find(|t| *t >= since)
            })
            .collect();
        if firsts.len() == n {
            let first = firsts.iter().min().expect("n > 0");
            let last = firsts.iter().max().expect("n > 0");
            return Ok(*last - *first);
        }
        if Instant::now() > deadline {
            bail!("the sweep reached only {} of {n} instances", firsts.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn humantime(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

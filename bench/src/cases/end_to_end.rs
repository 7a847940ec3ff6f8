//! `end-to-end`: the system as `cargo xtask up` runs it — registry, log
//! (writing into a temporary directory), visit and gateway hosts, all real
//! processes — loaded with `GET gateway/visit/`; the baseline is the same
//! load sent to the visit host directly (visit + log, without the gateway
//! hop). Then the same three services in one host process (`cargo xtask up
//! --one-host`, calls between them in process), and both against the plain
//! hyper server of `host-overhead` measured in the same run.

use std::time::Duration;

use harness::{ServiceSpec, TempDir};

use crate::Settings;
use crate::client;
use crate::load::{self, Budget, Outcome, Target};
use crate::procs;
use crate::report::{self, Row};

const CASE: &str = "end-to-end";

pub async fn run(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let registry = procs::registry(settings, &[])?;
    let cache = TempDir::try_new("cache")?;
    let data = TempDir::try_new("log")?;
    let cache_arg = cache.path().display().to_string();
    let data_arg = data.path().display().to_string();
    let budget = Budget::Timed {
        warmup: settings.warmup,
        measure: settings.measure,
    };
    let load = |addr, path: &str| load::run(Target::get(addr, path), settings.connections, budget);
    let (direct, three) = {
        let host = |plugin: &str, extra: &[&str]| -> anyhow::Result<harness::Proc> {
            let args = [&["--cache-dir", cache_arg.as_str()][..], extra].concat();
            let plugin = settings.artifacts.plugin(plugin)?;
            procs::host(settings, &plugin, &registry, &args)
        };
        let log = host("log", &["--dir", &data_arg])?;
        let visit = host("visit", &[])?;
        let gateway = host("gateway", &[])?;
        // The gateway learns of visit, and visit of log, through
        // notifications.
        ready(&gateway.url("/visit/")).await?;
        let direct = load(visit.addr(), "/").await?;
        let hosts = [log.pid(), visit.pid(), gateway.pid()];
        let three = with_cpu(&hosts, settings, load(gateway.addr(), "/visit/")).await?;
        // Gone before the next layout registers the same names.
        drop((log, visit, gateway));
        (direct, three)
    };
    let one = {
        let services = [
            ServiceSpec::new(&settings.artifacts.plugin("log")?).option("dir", &data_arg),
            ServiceSpec::new(&settings.artifacts.plugin("visit")?),
            ServiceSpec::new(&settings.artifacts.plugin("gateway")?),
        ];
        let config = data.path().join("services.toml");
        let host = procs::multi_host(
            settings,
            &config,
            &services,
            &registry,
            &["--cache-dir", &cache_arg],
        )?;
        ready(&services[2].url("/visit/")).await?;
        let gateway = services[2].addr.parse()?;
        with_cpu(&[host.pid()], settings, load(gateway, "/visit/")).await?
    };
    let hyper = {
        let baseline = procs::baseline(settings)?;
        load(baseline.addr(), "/").await?
    };

    let (one, one_cpu) = one;
    let (three, three_cpu) = three;
    let mut rows = vec![Row::compared(
        CASE,
        "gateway→visit→log throughput (vs visit direct)",
        report::rate(three.rate()),
        report::rate(direct.rate()),
        three.rate() / direct.rate(),
    )];
    rows.extend(Row::latencies(CASE, &three, &direct));
    rows.push(Row::new(
        CASE,
        "errors (gateway / direct)",
        format!("{} / {}", three.errors, direct.errors),
    ));
    rows.push(against(
        &three,
        &hyper,
        "three processes: gateway→visit→log (vs hyper)",
    ));
    rows.push(against(
        &one,
        &hyper,
        "one process: gateway→visit→log (vs hyper)",
    ));
    rows.push(Row::compared(
        CASE,
        "one process vs three: throughput",
        report::rate(one.rate()),
        report::rate(three.rate()),
        one.rate() / three.rate(),
    ));
    for p in [50.0, 99.0] {
        rows.push(Row::durations(
            CASE,
            &format!("one process vs three: latency p{p}"),
            one.percentile(p),
            three.percentile(p),
        ));
    }
    rows.push(Row::durations(
        CASE,
        "one process vs three: host CPU per request (all hosts)",
        one_cpu,
        three_cpu,
    ));
    rows.push(Row::new(
        CASE,
        "errors (one process / hyper)",
        format!("{} / {}", one.errors, hyper.errors),
    ));
    Ok(rows)
}

/// The outcome of `load`, and the CPU time the processes `pids` used per
/// answered request in its measured window (read when the warm-up ends and
/// when the load does).
async fn with_cpu(
    pids: &[u32],
    settings: &Settings,
    load: impl Future<Output = anyhow::Result<Outcome>>,
) -> anyhow::Result<(Outcome, Duration)> {
    let total = |pids: &[u32]| -> anyhow::Result<Duration> {
        pids.iter().map(|&pid| harness::usage::cpu_time(pid)).sum()
    };
    let at_window = {
        let (pids, warmup) = (pids.to_vec(), settings.warmup);
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            total(&pids)
        })
    };
    let outcome = load.await?;
    let used = total(pids)?.saturating_sub(at_window.await??);
    let per_request = used / outcome.ok.max(1) as u32;
    Ok((outcome, per_request))
}

/// Waits until `url` answers 200.
async fn ready(url: &str) -> anyhow::Result<()> {
    let every = Duration::from_millis(20);
    client::poll_for(url, None, every, Duration::from_secs(30)).await?;
    Ok(())
}

fn against(measured: &Outcome, hyper: &Outcome, metric: &str) -> Row {
    Row::compared(
        CASE,
        metric,
        report::rate(measured.rate()),
        report::rate(hyper.rate()),
        measured.rate() / hyper.rate(),
    )
}

//! `end-to-end`: the system as `cargo xtask up` runs it — registry, log
//! (writing into a temporary directory), visit and gateway hosts, all real
//! processes — loaded with `GET gateway/visit/`; the baseline is the same
//! load sent to the visit host directly (visit + log, without the gateway
//! hop). Then the same three services in one host process (`cargo xtask up
//! --one-host`, calls between them in process), and both against the plain
//! hyper server of `host-overhead`, against three plain hyper processes
//! chained (two proxies and an echo: the most any three processes can do
//! here, see `baseline`) and against the seed, the Go system Sparrow
//! reimplements, loaded the same way through its own gateway (see `seed`).
//!
//! The layouts run side by side and are loaded in turn (see [`rounds`]).

use std::time::Duration;

use harness::{ServiceSpec, TempDir};

use crate::Settings;
use crate::client;
use crate::load::{self, Budget, Outcome, Target};
use crate::procs;
use crate::report::{self, Row};
use crate::rounds::{self, Rounds, with_cpu};
use crate::seed::{self, Seed};

const CASE: &str = "end-to-end";

pub async fn run(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let cache = TempDir::try_new("cache")?;
    let cache_arg = cache.path().display().to_string();
    let load =
        |addr, path: &str, budget| load::run(Target::get(addr, path), settings.connections, budget);

    // Three processes. Each layout has its own registry and log directory:
    // both run at once, and neither may find the other's services.
    let registry = procs::registry(settings, &[])?;
    let three_data = TempDir::try_new("log")?;
    let three_data_arg = three_data.path().display().to_string();
    let host = |plugin: &str, extra: &[&str]| -> anyhow::Result<harness::Proc> {
        let args = [&["--cache-dir", cache_arg.as_str()][..], extra].concat();
        let plugin = settings.artifacts.plugin(plugin)?;
        procs::host(settings, &plugin, &registry, &args)
    };
    let log = host("log", &["--dir", &three_data_arg])?;
    let visit = host("visit", &[])?;
    let gateway = host("gateway", &[])?;
    let three_hosts = [log.pid(), visit.pid(), gateway.pid()];
    // The gateway learns of visit, and visit of log, through notifications.
    ready(&gateway.url("/visit/")).await?;

    // One process.
    let one_registry = procs::registry(settings, &[])?;
    let one_data = TempDir::try_new("log")?;
    let services = [
        ServiceSpec::new(&settings.artifacts.plugin("log")?)
            .option("dir", &one_data.path().display().to_string()),
        ServiceSpec::new(&settings.artifacts.plugin("visit")?),
        ServiceSpec::new(&settings.artifacts.plugin("gateway")?),
    ];
    let one_host = procs::multi_host(
        settings,
        &one_data.path().join("services.toml"),
        &services,
        &one_registry,
        &["--cache-dir", &cache_arg],
    )?;
    ready(&services[2].url("/visit/")).await?;
    let one_gateway = services[2].addr.parse()?;

    let baseline = procs::baseline(settings)?;
    let chain = procs::baseline_chain(settings)?;
    let chain_pids = chain.each_ref().map(harness::Proc::pid);
    // Without the seed the case still runs; its rows say why it is missing.
    let seed = match Seed::start(&settings.seed) {
        Ok(seed) => ready(&format!("http://{}{}", seed.gateway, seed::VISIT_PATH))
            .await
            .map(|()| seed),
        Err(e) => Err(e),
    };

    let full = Budget::Timed {
        warmup: settings.warmup,
        measure: settings.measure,
    };
    let direct = load(visit.addr(), "/", full).await?;
    let round = rounds::window(settings);
    let (mut one, mut three, mut hyper) = (Rounds::default(), Rounds::default(), Rounds::default());
    let (mut go, mut hyper_chain) = (Rounds::default(), Rounds::default());
    for _ in 0..rounds::ROUNDS {
        three.add(with_cpu(&three_hosts, round, load(gateway.addr(), "/visit/", round)).await?);
        one.add(
            with_cpu(
                &[one_host.pid()],
                round,
                load(one_gateway, "/visit/", round),
            )
            .await?,
        );
        hyper.add((load(baseline.addr(), "/", round).await?, Duration::ZERO));
        hyper_chain
            .add(with_cpu(&chain_pids, round, load(chain[0].addr(), "/visit/", round)).await?);
        if let Ok(seed) = &seed {
            go.add(
                with_cpu(
                    &seed.pids(),
                    round,
                    load(seed.gateway, seed::VISIT_PATH, round),
                )
                .await?,
            );
        }
    }

    let (one_all, three_all, hyper_all) = (one.outcome(), three.outcome(), hyper.outcome());
    let mut rows = vec![Row::compared(
        CASE,
        "gateway→visit→log throughput (vs visit direct)",
        report::rate(three_all.rate()),
        report::rate(direct.rate()),
        three_all.rate() / direct.rate(),
    )];
    rows.extend(Row::latencies(CASE, &three_all, &direct));
    rows.push(Row::new(
        CASE,
        "errors (gateway / direct)",
        format!("{} / {}", three_all.errors, direct.errors),
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
    rows.push(against(
        &hyper_chain,
        &hyper,
        "three plain hyper processes chained (vs hyper): the ceiling of any three",
    ));
    rows.push(against(
        &three,
        &hyper_chain,
        "three processes vs three plain hyper processes chained: throughput",
    ));
    rows.push(Row::durations(
        CASE,
        "three processes vs three plain hyper processes chained: CPU per request",
        three.cpu_per_request(),
        hyper_chain.cpu_per_request(),
    ));
    rows.push(against(&one, &three, "one process vs three: throughput"));
    for p in [50.0, 99.0] {
        rows.push(Row::durations(
            CASE,
            &format!("one process vs three: latency p{p}"),
            one_all.percentile(p),
            three_all.percentile(p),
        ));
    }
    rows.push(Row::durations(
        CASE,
        "one process vs three: host CPU per request (all hosts)",
        one.cpu_per_request(),
        three.cpu_per_request(),
    ));
    rows.push(Row::new(
        CASE,
        "errors (one process / hyper / hyper chained)",
        format!(
            "{} / {} / {}",
            one_all.errors,
            hyper_all.errors,
            hyper_chain.outcome().errors
        ),
    ));
    match &seed {
        Ok(_) => rows.extend(against_seed(
            &one,
            &three,
            &three_all,
            &hyper,
            &hyper_chain,
            &go,
        )),
        Err(e) => rows.push(Row::new(
            CASE,
            "the seed (Go)",
            format!("skipped: {e:#}").replace('|', "/"),
        )),
    }
    Ok(rows)
}

/// The rows that compare Sparrow with the seed: the targets are three
/// times its requests/s in one process and one and a half in three.
/// `three_all` is `three`'s rounds merged, as the other rows use it.
fn against_seed(
    one: &Rounds,
    three: &Rounds,
    three_all: &Outcome,
    hyper: &Rounds,
    hyper_chain: &Rounds,
    go: &Rounds,
) -> Vec<Row> {
    let go_all = go.outcome();
    vec![
        against(one, go, "one process vs the seed (Go): throughput"),
        against(three, go, "three processes vs the seed (Go): throughput"),
        Row::durations(
            CASE,
            "three processes vs the seed (Go): latency p99",
            three_all.percentile(99.0),
            go_all.percentile(99.0),
        ),
        Row::durations(
            CASE,
            "three processes vs the seed (Go): CPU per request (all processes)",
            three.cpu_per_request(),
            go.cpu_per_request(),
        ),
        against(go, hyper, "the seed (Go): gateway→visit→log (vs hyper)"),
        against(
            go,
            hyper_chain,
            "the seed (Go) vs three plain hyper processes chained",
        ),
        Row::new(CASE, "errors (the seed)", go_all.errors.to_string()),
    ]
}

/// Waits until `url` answers 200.
async fn ready(url: &str) -> anyhow::Result<()> {
    let every = Duration::from_millis(20);
    client::poll_for(url, None, every, Duration::from_secs(30)).await?;
    Ok(())
}

/// `measured`'s rate against `baseline`'s (see [`Rounds::against`]).
fn against(measured: &Rounds, baseline: &Rounds, metric: &str) -> Row {
    measured.against(baseline, CASE, metric)
}

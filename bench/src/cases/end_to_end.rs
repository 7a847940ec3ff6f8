//! `end-to-end`: the system as `cargo xtask up` runs it — registry, log
//! (writing into a temporary directory), visit and gateway hosts, all real
//! processes — loaded with `GET gateway/visit/`; the baseline is the same
//! load sent to the visit host directly (visit + log, without the gateway
//! hop).

use std::time::Duration;

use harness::TempDir;

use crate::Settings;
use crate::client;
use crate::load::{self, Budget, Target};
use crate::procs;
use crate::report::{self, Row};

const CASE: &str = "end-to-end";

pub async fn run(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let registry = procs::registry(settings, &[])?;
    let cache = TempDir::try_new("cache")?;
    let data = TempDir::try_new("log")?;
    let cache_arg = cache.path().display().to_string();
    let data_arg = data.path().display().to_string();
    let _log = procs::host(
        settings,
        &settings.artifacts.plugin("log")?,
        &registry,
        &["--cache-dir", &cache_arg, "--dir", &data_arg],
    )?;
    let visit = procs::host(
        settings,
        &settings.artifacts.plugin("visit")?,
        &registry,
        &["--cache-dir", &cache_arg],
    )?;
    let gateway = procs::host(
        settings,
        &settings.artifacts.plugin("gateway")?,
        &registry,
        &["--cache-dir", &cache_arg],
    )?;
    // The gateway learns of visit, and visit of log, through notifications.
    let ready = Duration::from_secs(30);
    let every = Duration::from_millis(20);
    client::poll_for(&gateway.url("/visit/"), None, every, ready).await?;

    let budget = Budget::Timed {
        warmup: settings.warmup,
        measure: settings.measure,
    };
    let direct = load::run(Target::get(visit.addr(), "/"), settings.connections, budget).await?;
    let through = load::run(
        Target::get(gateway.addr(), "/visit/"),
        settings.connections,
        budget,
    )
    .await?;

    let mut rows = vec![Row::compared(
        CASE,
        "gateway→visit→log throughput (vs visit direct)",
        report::rate(through.rate()),
        report::rate(direct.rate()),
        through.rate() / direct.rate(),
    )];
    rows.extend(Row::latencies(CASE, &through, &direct));
    rows.push(Row::new(
        CASE,
        "errors (gateway / direct)",
        format!("{} / {}", through.errors, direct.errors),
    ));
    Ok(rows)
}

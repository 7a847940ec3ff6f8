//! `log`: `POST /log` straight to a log host, with `--sync` (every answered
//! line flushed to disk, flushes shared by concurrent requests) against
//! the same host without it; and the log host against a host of the plain
//! echo plugin given the same bodies (what appending a line costs over a
//! plugin that does nothing). The three hosts run side by side and are
//! loaded in turn (see [`rounds`]): measured one after the other, the ratio
//! to the echo host ranged from 0.69 to 0.93 over five runs within the hour,
//! as a slow spell fell on one host alone; in turns, 0.92 to 0.98.

use std::sync::Arc;

use bytes::Bytes;
use harness::{Proc, TempDir};

use crate::Settings;
use crate::load::{self, Target};
use crate::procs;
use crate::report::Row;
use crate::rounds::{self, Rounds, with_cpu};

const CASE: &str = "log";

pub async fn run(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let registry = procs::registry(settings, &[])?;
    let cache = TempDir::try_new("cache")?;
    let cache_arg = cache.path().display().to_string();
    let log_host = |data: &TempDir, extra: &[&str]| -> anyhow::Result<Proc> {
        let data_arg = data.path().display().to_string();
        let args = [
            &[
                "--cache-dir",
                cache_arg.as_str(),
                "--dir",
                data_arg.as_str(),
            ][..],
            extra,
        ]
        .concat();
        procs::host(
            settings,
            &settings.artifacts.plugin("log")?,
            &registry,
            &args,
        )
    };
    let (plain_data, synced_data) = (TempDir::try_new("log")?, TempDir::try_new("log")?);
    let plain_host = log_host(&plain_data, &[])?;
    let synced_host = log_host(&synced_data, &["--sync"])?;
    let echo_host = procs::host(
        settings,
        &settings.artifacts.stub("plain-echo")?,
        &registry,
        &["--cache-dir", &cache_arg],
    )?;

    let window = rounds::window(settings);
    let lines = async |host: &Proc, path: &str| {
        let body = Arc::new(|n| Bytes::from(format!("bench line {n}")));
        let target = Target::post(host.addr(), path, body);
        let load = load::run(target, settings.connections, window);
        with_cpu(&[host.pid()], window, load).await
    };
    let (mut plain, mut synced, mut echo) =
        (Rounds::default(), Rounds::default(), Rounds::default());
    for _ in 0..rounds::ROUNDS {
        plain.add(lines(&plain_host, "/log").await?);
        synced.add(lines(&synced_host, "/log").await?);
        echo.add(lines(&echo_host, "/echo").await?);
    }
    Ok(vec![
        plain.against(&echo, CASE, "POST /log (vs POST to the plain echo host)"),
        Row::durations(
            CASE,
            "POST /log vs the plain echo host: CPU per request",
            plain.cpu_per_request(),
            echo.cpu_per_request(),
        ),
        synced.against(&plain, CASE, "POST /log with --sync (vs without)"),
        Row::new(
            CASE,
            "errors (sync / plain)",
            format!("{} / {}", synced.outcome().errors, plain.outcome().errors),
        ),
    ])
}

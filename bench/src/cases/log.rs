//! `log`: `POST /log` straight to a log host, with `--sync` (every answered
//! line flushed to disk, flushes shared by concurrent requests) against
//! the same host without it; and the log host against a host of the plain
//! echo plugin given the same bodies (what appending a line costs over a
//! plugin that does nothing).

use std::sync::Arc;

use bytes::Bytes;
use harness::TempDir;

use crate::Settings;
use crate::load::{self, Budget, Target};
use crate::procs;
use crate::report::{self, Row};

const CASE: &str = "log";

pub async fn run(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let registry = procs::registry(settings, &[])?;
    let cache = TempDir::try_new("cache")?;
    let budget = Budget::Timed {
        warmup: settings.warmup,
        measure: settings.measure,
    };
    let mut rates = Vec::new();
    for sync in [false, true] {
        let data = TempDir::try_new("log")?;
        let mut args = vec![
            "--cache-dir".to_owned(),
            cache.path().display().to_string(),
            "--dir".to_owned(),
            data.path().display().to_string(),
        ];
        if sync {
            args.push("--sync".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = procs::host(
            settings,
            &settings.artifacts.plugin("log")?,
            &registry,
            &args,
        )?;
        let target = Target::post(
            log.addr(),
            "/log",
            Arc::new(|n| Bytes::from(format!("bench line {n}"))),
        );
        rates.push(load::run(target, settings.connections, budget).await?);
    }
    let echo = {
        let cache_arg = cache.path().display().to_string();
        let echo = procs::host(
            settings,
            &settings.artifacts.stub("plain-echo")?,
            &registry,
            &["--cache-dir", &cache_arg],
        )?;
        let target = Target::post(
            echo.addr(),
            "/echo",
            Arc::new(|n| Bytes::from(format!("bench line {n}"))),
        );
        load::run(target, settings.connections, budget).await?
    };
    let (plain, synced) = (&rates[0], &rates[1]);
    Ok(vec![
        Row::compared(
            CASE,
            "POST /log (vs POST to the plain echo host)",
            report::rate(plain.rate()),
            report::rate(echo.rate()),
            plain.rate() / echo.rate(),
        ),
        Row::compared(
            CASE,
            "POST /log with --sync (vs without)",
            report::rate(synced.rate()),
            report::rate(plain.rate()),
            synced.rate() / plain.rate(),
        ),
        Row::new(
            CASE,
            "errors (sync / plain)",
            format!("{} / {}", synced.errors, plain.errors),
        ),
    ])
}

//! `startup`: host start to its first 200 from the echo stub, with an empty
//! compile cache (the plugin is compiled) and with a warm one (loaded from
//! disk); the baseline is the plain hyper server's start to first answer.
//! Each is the median of a few starts.

use std::path::Path;
use std::time::{Duration, Instant};

use harness::{Launch, Proc, TempDir, free_addr};

use crate::Settings;
use crate::client;
use crate::procs;
use crate::report::Row;

const CASE: &str = "startup";
const POLL: Duration = Duration::from_millis(2);
const TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of a process's log quoted when it does not answer.
const LOG_LINES: usize = 200;

pub async fn run(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let registry = procs::registry(settings, &[])?;
    let host = settings.artifacts.binary("host")?;
    let echo = settings.artifacts.stub("echo")?;
    let repeats = settings.repeats.max(2);

    let mut baseline = Vec::new();
    for _ in 0..repeats {
        let addr = free_addr()?.to_string();
        let launch = Launch::new("baseline", &settings.self_exe).args([
            "serve-baseline",
            "--addr",
            addr.as_str(),
        ]);
        baseline.push(first_answer(launch, &addr).await?);
    }

    let warm_cache = TempDir::try_new("cache")?;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..repeats {
        let empty = TempDir::try_new("cache")?;
        cold.push(start_host(&host, &echo, &registry, empty.path()).await?);
    }
    // One start fills the warm cache, then the measured ones use it.
    start_host(&host, &echo, &registry, warm_cache.path()).await?;
    for _ in 0..repeats {
        warm.push(start_host(&host, &echo, &registry, warm_cache.path()).await?);
    }
    let (baseline, cold, warm) = (median(baseline), median(cold), median(warm));
    Ok(vec![
        Row::durations(
            CASE,
            "start → first 200, empty cache (vs hyper)",
            cold,
            baseline,
        ),
        Row::durations(
            CASE,
            "start → first 200, warm cache (vs hyper)",
            warm,
            baseline,
        ),
    ])
}

async fn start_host(
    host: &Path,
    plugin: &Path,
    registry: &Proc,
    cache: &Path,
) -> anyhow::Result<Duration> {
    let addr = free_addr()?.to_string();
    let launch = Launch::host(host, plugin, &addr, &registry.url(""))
        .arg("--cache-dir")
        .arg(cache);
    first_answer(launch, &addr).await
}

/// Starts `launch` and polls `addr` until it answers 200; the process is
/// stopped again.
async fn first_answer(launch: Launch, addr: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let proc = launch.spawn()?;
    let url = format!("http://{addr}/echo");
    let answered = client::poll_for(&url, None, POLL, TIMEOUT).await;
    let took = started.elapsed();
    answered.map_err(|e| anyhow::anyhow!("{e:#}\n{}", proc.log_tail(LOG_LINES)))?;
    drop(proc);
    Ok(took)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

//! `startup`: host start to its first 200 from the echo stub, with an empty
//! compile cache (the plugin is compiled) and with a warm one (loaded from
//! disk); the baseline is the plain hyper server's start to first answer.
//! Each is the median of a few starts.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::Settings;
use crate::client;
use crate::procs::{Proc, TempDir, binary, free_port, stub};
use crate::report::Row;

const CASE: &str = "startup";
const POLL: Duration = Duration::from_millis(2);
const TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let registry = Proc::registry(settings, &[])?;
    let host = binary(settings, "host")?;
    let echo = stub(settings, "echo")?;
    let repeats = settings.repeats.max(2);

    let mut baseline = Vec::new();
    for _ in 0..repeats {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let args = ["serve-baseline", "--addr", addr.as_str()];
        baseline.push(first_answer(&settings.self_exe, &args, &addr).await?);
    }

    let warm_cache = TempDir::new("cache")?;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..repeats {
        let empty = TempDir::new("cache")?;
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
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut args = Proc::host_args(plugin, &addr, registry);
    args.extend(["--cache-dir".into(), cache.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    first_answer(host, &args, &addr).await
}

/// Starts `program` and polls `addr` until it answers 200; the process is
/// stopped again.
async fn first_answer(program: &Path, args: &[&str], addr: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let proc = Proc::spawn("started", program, args, "info")?;
    let url = format!("http://{addr}/echo");
    let answered = client::poll_for(&url, None, POLL, TIMEOUT).await;
    let took = started.elapsed();
    answered.map_err(|e| anyhow::anyhow!("{e:#}\n{}", proc.log_tail()))?;
    drop(proc);
    Ok(took)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

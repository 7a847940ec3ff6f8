//! `hot-swap`: a host serves a copy of the echo stub; the copy is replaced
//! the way deployment tools do (write beside, rename into place) and
//! `/version` is polled every 2 ms until the new version answers. Cold: the
//! new version was never compiled (empty cache); warm: it is in the cache.
//! The host looks at the file every 50 ms and acts once it has looked the
//! same twice, so about 50–100 ms of any figure is that polling.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use harness::TempDir;

use crate::Settings;
use crate::client;
use crate::procs;
use crate::report::{self, Row};

const CASE: &str = "hot-swap";
const POLL: Duration = Duration::from_millis(2);
const TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let stub = |name| settings.artifacts.stub(name);
    let (v1, v2) = (stub("echo")?, stub("echo-v2")?);
    let registry = procs::registry(settings, &[])?;
    let dir = TempDir::try_new("swap")?;
    let cache = TempDir::try_new("cache")?;
    let plugin = dir.join("plugin.wasm");
    std::fs::copy(&v1, &plugin).context("copying the plugin")?;
    let host = procs::host(
        settings,
        &plugin,
        &registry,
        &["--cache-dir", &cache.path().display().to_string()],
    )?;
    let url = host.url("/version");
    client::poll_for(&url, Some("v1"), POLL, TIMEOUT).await?;

    // v2 was never compiled: the swap compiles it.
    let cold = swap(&v2, &plugin, &url, "v2").await?;
    // Both versions are cached now; alternate between them.
    let mut warm = Vec::new();
    for (from, answer) in [(&v1, "v1"), (&v2, "v2"), (&v1, "v1")]
        .into_iter()
        .take(settings.repeats.max(1))
    {
        warm.push(swap(from, &plugin, &url, answer).await?);
    }
    warm.sort();
    let warm = warm[warm.len() / 2];
    Ok(vec![
        Row::new(
            CASE,
            "rename → first v2 answer, cold compile",
            report::duration(cold),
        ),
        Row::compared(
            CASE,
            "rename → first new answer, cached (vs cold)",
            report::duration(warm),
            report::duration(cold),
            warm.as_secs_f64() / cold.as_secs_f64(),
        ),
    ])
}

/// Installs `source` over `plugin` atomically and times the first `answer`.
async fn swap(source: &Path, plugin: &Path, url: &str, answer: &str) -> anyhow::Result<Duration> {
    // A little pause, so that the host's file poll sees distinct versions.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let temporary = plugin.with_extension("tmp");
    std::fs::copy(source, &temporary).context("copying the new version")?;
    let renamed = Instant::now();
    std::fs::rename(&temporary, plugin).context("renaming it into place")?;
    client::poll_for(url, Some(answer), POLL, TIMEOUT).await?;
    Ok(renamed.elapsed())
}

//! `hot-swap`: a host serves a copy of the echo stub; the copy is replaced
//! the way deployment tools do (write beside, rename into place) and
//! `/version` is polled every 2 ms until the new version answers. Cold: the
//! new version was never compiled (empty cache); warm: it is in the cache;
//! and an 18 MB Python plugin compiled ahead with `host compile`, the
//! deploy sequence of docs/plugins.md. The host learns of the rename from a
//! file event (inotify).

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

    // The deploy sequence for a big plugin: compile it into the host's
    // cache first, then rename it into place.
    let python = settings.artifacts.plugin("visit-py")?;
    precompile(settings, &python, cache.path())?;
    let precompiled = swap_away(&python, &plugin, &url, "v1").await?;
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
        Row::durations(
            CASE,
            "rename → first answer, Python plugin after `host compile` (vs 200 ms target)",
            precompiled,
            PRECOMPILED_TARGET,
        ),
    ])
}

/// What a swap to a precompiled big plugin should take at most.
const PRECOMPILED_TARGET: Duration = Duration::from_millis(200);

/// `host compile --plugin PLUGIN --cache-dir CACHE`.
fn precompile(settings: &Settings, plugin: &Path, cache: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new(settings.artifacts.binary("host")?)
        .arg("compile")
        .arg("--plugin")
        .arg(plugin)
        .arg("--cache-dir")
        .arg(cache)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running host compile")?;
    anyhow::ensure!(status.success(), "host compile failed: {status}");
    Ok(())
}

/// Installs `source` over `plugin` and times the first answer that is no
/// longer `old` (another service: it answers what it answers).
async fn swap_away(source: &Path, plugin: &Path, url: &str, old: &str) -> anyhow::Result<Duration> {
    let renamed = install(source, plugin)?;
    let changed = harness::wait::Deadline::after(TIMEOUT)
        .every(POLL)
        .poll_async(|| async {
            let reply = client::client().get(url).await.ok()?;
            (reply.body != old.as_bytes()).then(|| renamed.elapsed())
        })
        .await;
    changed.with_context(|| format!("{url} still answered {old} after {TIMEOUT:?}"))
}

/// Installs `source` over `plugin` atomically and times the first `answer`.
async fn swap(source: &Path, plugin: &Path, url: &str, answer: &str) -> anyhow::Result<Duration> {
    let renamed = install(source, plugin)?;
    client::poll_for(url, Some(answer), POLL, TIMEOUT).await?;
    Ok(renamed.elapsed())
}

/// Copies `source` beside `plugin` and renames it into place; the instant
/// of the rename.
fn install(source: &Path, plugin: &Path) -> anyhow::Result<Instant> {
    let temporary = plugin.with_extension("tmp");
    std::fs::copy(source, &temporary).context("copying the new version")?;
    let renamed = Instant::now();
    std::fs::rename(&temporary, plugin).context("renaming it into place")?;
    Ok(renamed)
}

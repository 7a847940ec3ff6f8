//! `host compile --plugin FILE`: compiles a plugin into the compiled-plugin
//! cache ahead of time, so that a swap to it (or a start with it) takes
//! milliseconds instead of the seconds a big plugin takes to compile. The
//! plugin is also linked against the host's world, so a plugin that could
//! not be served is refused here, before any swap.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::cli::CompileCli;
use crate::plugin::{PluginEngine, SandboxSettings};
use crate::swap::short;

/// Compiles `cli.plugin` into the cache; fails if caching is off.
pub async fn compile(cli: CompileCli) -> anyhow::Result<()> {
    let Some(cache) = cli.compiling.compile_cache() else {
        bail!("nothing to do with --no-cache: `host compile` fills the compiled-plugin cache");
    };
    // Only what shapes compiled code matters here (the memory limit); the
    // rest sizes a server that this command does not run.
    let engine = PluginEngine::new(SandboxSettings {
        request_timeout: Duration::from_secs(10),
        memory_limit: cli.compiling.memory_limit,
        max_instances: 1,
        dir: None,
        compile_cache: Some(cache.clone()),
        reuse: 1,
        max_queue: 0,
        queue_timeout: Duration::ZERO,
    })?;
    let started = Instant::now();
    let shown = cli.plugin.display();
    let (component, digest) = engine.compile_file(&cli.plugin).await?;
    engine
        .check_link(&component)
        .with_context(|| format!("plugin {shown}"))?;
    println!(
        "compiled {shown} (version {}) into {} in {:?}",
        short(&digest),
        cache.dir.display(),
        started.elapsed()
    );
    Ok(())
}

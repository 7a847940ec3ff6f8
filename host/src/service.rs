//! The life of one service: load the plugin, listen, register, serve (and
//! swap plugin versions) until SIGINT or SIGTERM, then deregister and drain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use registry::auth::Token;
use registry::cache::InstanceCache;
use registry::client::RegistryClient;
use registry::record::ServiceRecord;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::Cli;
use crate::discovery::Discovery;
use crate::durability::Flusher;
use crate::kv::KvStore;
use crate::outbound::Outbound;
use crate::plugin::{PluginEngine, SandboxSettings, Shared};
use crate::server::{self, Active, App};
use crate::swap::{Overrides, Swapper, short};

/// How long a call to the registry may take.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(dir) = &cli.dir
        && !dir.is_dir()
    {
        bail!("--dir {}: not a directory", dir.display());
    }
    let client = RegistryClient::new(&cli.registry, REGISTRY_TIMEOUT)
        .with_context(|| format!("--registry {}", cli.registry))?;
    let engine = PluginEngine::new(SandboxSettings {
        request_timeout: cli.request_timeout,
        memory_limit: cli.memory_limit,
        max_instances: cli.max_instances,
        dir: cli.dir.clone(),
        compile_cache: cli.compile_cache(),
        reuse: cli.reuse,
    })?;

    let cache = Arc::new(InstanceCache::new());
    let shared = Shared {
        outbound: Outbound::new(cache.clone(), cli.call_timeout, cli.max_body),
        cache,
        kv: Arc::new(match &cli.state {
            Some(path) => KvStore::open(path)?,
            None => KvStore::default(),
        }),
    };

    // While it describes itself the plugin has no name yet and may call
    // nothing.
    let started = Instant::now();
    let plugin = engine
        .load(&cli.plugin, shared.env("plugin".into(), Vec::new()))
        .await?;
    let overrides = Overrides {
        name: cli.name.clone(),
        requires: cli.requires(),
    };
    let (name, requires) = overrides.apply(&plugin.description);

    let listener = TcpListener::bind(cli.addr)
        .await
        .with_context(|| format!("cannot listen on {}", cli.addr))?;
    let addr = listener.local_addr()?;
    let record = ServiceRecord::new(name.clone(), addr.to_string(), requires.clone());
    record
        .validate()
        .with_context(|| format!("cannot register as '{name}'"))?;
    tracing::info!(
        service = %name,
        plugin = %cli.plugin.display(),
        version = %short(&plugin.digest),
        requires = ?requires,
        ready_in = ?started.elapsed(),
        "{}",
        registry::listening::message(addr)
    );

    let active = Active {
        plugin,
        env: shared.env(name, requires),
    };
    let discovery = Discovery::new(
        client,
        Token::new(cli.token.clone()),
        shared.cache.clone(),
        record,
    );
    let flusher = match (&cli.dir, cli.sync) {
        (Some(dir), true) => Some(Flusher::new(dir)?),
        _ => None,
    };
    let app = Arc::new(App::new(
        engine,
        shared,
        discovery,
        cli.max_body,
        flusher,
        active,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let drain = cli.request_timeout + Duration::from_secs(1);
    let server = tokio::spawn(server::serve(
        listener,
        app.clone(),
        stopped(stop_rx.clone()),
        drain,
    ));
    let swapper = Swapper {
        app: app.clone(),
        path: cli.plugin.clone(),
        overrides,
    };
    let swapper = tokio::spawn(swapper.run(stopped(stop_rx)));

    // Registration runs while the server already answers: the registry may
    // send a heartbeat or a notification the moment it has the record.
    let mut signal = std::pin::pin!(shutdown_signal());
    tokio::select! {
        registered = app.discovery.register(cli.registry_wait) => registered?,
        () = &mut signal => {
            let _ = stop_tx.send(true);
            let _ = server.await;
            return Ok(());
        }
    }
    // From now on a registry that forgets us is told again.
    let watchdog = {
        let app = app.clone();
        let timeout = cli.heartbeat_timeout;
        tokio::spawn(async move { app.discovery.keep_registered(timeout).await })
    };
    signal.await;

    tracing::info!("shutting down");
    watchdog.abort();
    app.discovery.deregister().await;
    let _ = stop_tx.send(true);
    let _ = swapper.await;
    server.await.context("server task failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

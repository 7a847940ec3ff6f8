//! The life of one service: load the plugin, listen, register, serve until
//! SIGINT or SIGTERM, then deregister and drain.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use registry::cache::InstanceCache;
use registry::client::RegistryClient;
use registry::record::ServiceRecord;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::cli::Cli;
use crate::discovery::Discovery;
use crate::kv::KvStore;
use crate::outbound::Outbound;
use crate::plugin::{PluginEngine, SandboxSettings, ServiceEnv};
use crate::server::{self, Active, App};

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
    })?;

    let cache = Arc::new(InstanceCache::new());
    let outbound = Outbound::new(cache.clone(), cli.call_timeout, cli.max_body);
    let kv = Arc::new(KvStore::default());
    let env = |name: String, requires: Vec<String>| {
        Arc::new(ServiceEnv {
            name,
            requires,
            cache: cache.clone(),
            outbound: outbound.clone(),
            kv: kv.clone(),
        })
    };

    // While it describes itself the plugin has no name yet and may call
    // nothing.
    let plugin = engine
        .load(&cli.plugin, env("plugin".into(), Vec::new()))
        .await?;
    let name = cli.name.clone().unwrap_or(plugin.description.name.clone());
    let requires = cli
        .requires()
        .unwrap_or(plugin.description.requires.clone());

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
        requires = ?requires,
        "listening on {addr}"
    );

    let app = Arc::new(App {
        engine,
        active: Active {
            plugin,
            env: env(name, requires),
        },
        discovery: Discovery::new(client, cache.clone(), record),
        max_body: cli.max_body,
    });
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let drain = cli.request_timeout + Duration::from_secs(1);
    let server = tokio::spawn(server::serve(
        listener,
        app.clone(),
        async move {
            let _ = stop_rx.await;
        },
        drain,
    ));

    // Registration runs while the server already answers: the registry may
    // send a heartbeat or a notification the moment it has the record.
    let mut signal = std::pin::pin!(shutdown_signal());
    tokio::select! {
        registered = app.discovery.register(cli.registry_wait) => registered?,
        () = &mut signal => {
            let _ = stop_tx.send(());
            let _ = server.await;
            return Ok(());
        }
    }
    signal.await;

    tracing::info!("shutting down");
    app.discovery.deregister().await;
    let _ = stop_tx.send(());
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

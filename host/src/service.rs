//! The life of one service: load the plugin, listen, register, serve (and
//! swap plugin versions) until told to stop, then deregister and drain.
//!
//! [`Host::start`] does everything that can fail on bad input, so that a
//! caller learns of it before anything is served; [`Host::run`] serves.
//! [`serve`] is the two in a row, as the binary runs them.
//!
//! A process may run several services ([`Hosts`], `host --config`): each
//! keeps its own listener, registration, state, limits and hot swap; they
//! share one wasmtime engine (one epoch ticker, one pool sized for all of
//! them), the metrics and the list of local services through which they
//! call each other in process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use protocol::accept::{self, ServeSettings};
use protocol::essential::{Ended, Essential};
use protocol::record::{RecordError, ServiceRecord};
use protocol::registry_client::RegistryClient;
use protocol::token::Token;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::appends::Appends;
use crate::cli::Cli;
use crate::control::{Control, Controller};
use crate::discovery::Discovery;
use crate::discovery::cache::InstanceCache;
use crate::durability::Flusher;
use crate::kv::KvStore;
use crate::local::LocalServices;
use crate::metrics::{self, HostMetrics};
use crate::outbound::Outbound;
use crate::plugin::{
    EngineCore, GrantedDir, OutgoingSettings, Plugin, PluginEngine, SandboxSettings, Shared,
};
use crate::server::{self, Active, App, BodyLimits};
use crate::swap::{Overrides, Stamp, Swapper, short, stamp};

/// How long a call to the registry may take.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the services `services` describes (one, from the flags, or those
/// of `--config`) and serves them until `control` says stop. A stop while
/// they start ends it at once, without error.
pub async fn serve(services: Vec<Cli>, control: Control) -> anyhow::Result<()> {
    tokio::select! {
        hosts = Hosts::start(services) => hosts?.run(control).await,
        () = control.stopped() => {
            tracing::info!("stopped before serving");
            Ok(())
        }
    }
}

/// What the services of one process share.
struct Common {
    engine: Arc<EngineCore>,
    local: Arc<LocalServices>,
    metrics: Option<Arc<HostMetrics>>,
}

impl Common {
    fn new(services: &[Cli]) -> anyhow::Result<Common> {
        let first = services.first().context("no service to run")?;
        // For sizing the engine's pool: no directory needs opening yet.
        let settings: Vec<SandboxSettings> = services
            .iter()
            .map(|cli| sandbox_settings(cli, None))
            .collect();
        Ok(Common {
            engine: EngineCore::new(&settings, first.compiling.memory_limit)?,
            local: LocalServices::new(),
            metrics: first
                .metrics_addr
                .map(|_| Arc::new(HostMetrics::new(first.metrics_max_targets as usize))),
        })
    }
}

/// The services of one process, loaded and listening, not yet registered.
pub struct Hosts(Vec<Host>);

impl Hosts {
    /// Loads and binds every service, in the order given; the first error
    /// ends it, naming the service.
    pub async fn start(services: Vec<Cli>) -> anyhow::Result<Hosts> {
        let common = Common::new(&services)?;
        let several = services.len() > 1;
        let mut hosts: Vec<Host> = Vec::with_capacity(services.len());
        for (n, cli) in services.into_iter().enumerate() {
            // `services.toml: service 2 (plugins/visit.wasm)`, as the
            // errors of the file itself name a service; a host of one
            // `--plugin` names none.
            let plugin = cli.plugin_path().display().to_string();
            let label = match &cli.config {
                Some(file) => Some(format!("{}: service {} ({plugin})", file.display(), n + 1)),
                None => several.then(|| format!("service {} ({plugin})", n + 1)),
            };
            // The metrics address is host-wide: one listener serves them all.
            let host = Host::start_with(cli, &common, n == 0).await;
            let host = match &label {
                Some(label) => host.context(label.clone())?,
                None => host?,
            };
            // The check a swap makes too: only another service can have the
            // name, so a host of one service always passes it.
            let name = host.app.active().env.name.clone();
            let _claimed = common
                .local
                .claim(&host.app, &name)
                .await
                .map_err(|taken| {
                    anyhow!(
                        "{}: {taken} (give one of them another `name = \"...\"`)",
                        label.as_deref().unwrap_or_default()
                    )
                })?;
            hosts.push(host);
        }
        Ok(Hosts(hosts))
    }

    /// Where each service listens, in the order given.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.0.iter().map(Host::local_addr).collect()
    }

    /// Runs every service until `control` says stop; a service that cannot
    /// register stops the others, and its error is the answer.
    ///
    /// On stop each service stops taking connections and drains its own
    /// requests at once, but stays callable in process until every service
    /// has drained: a request in flight that calls a sibling finishes as it
    /// would across processes. Only then do they all stop.
    pub async fn run(self, control: Control) -> anyhow::Result<()> {
        let (controllers, controls) = control.fan_out(self.0.len());
        let mut running = tokio::task::JoinSet::new();
        let several = self.0.len() > 1;
        for (host, control) in self.0.into_iter().zip(controls) {
            // Each service's own lines (registering, draining) say whose.
            let span = match several {
                true => tracing::info_span!("service", name = %host.app.active().env.name),
                false => tracing::Span::none(),
            };
            let drained = host.run_until_drained(control).instrument(span.clone());
            running.spawn(async move { (drained.await, span) });
        }
        let mut result = Ok(());
        let mut drained = Vec::new();
        while let Some(done) = running.join_next().await {
            let done = done
                .context("service task failed")
                .and_then(|(r, span)| r.map(|d| (d, span)));
            match done {
                Ok(done) => drained.push(done),
                Err(e) if result.is_ok() => {
                    controllers.iter().for_each(Controller::stop);
                    result = Err(e);
                }
                Err(_) => {}
            }
        }
        for (service, span) in drained {
            span.in_scope(|| service.stop());
        }
        result
    }
}

/// A service that is loaded and listening, not yet registered.
pub struct Host {
    cli: Cli,
    app: Arc<App>,
    listener: TcpListener,
    /// With `--metrics-addr`: where `GET /metrics` is answered.
    metrics: Option<(TcpListener, Arc<HostMetrics>)>,
    /// The plugin file as it was when it was read.
    loaded: Option<Stamp>,
    /// The services of this process, itself among them.
    local: Arc<LocalServices>,
}

impl Host {
    /// Loads the plugin and binds the address: every error a user can cause
    /// on the command line shows here, as one message naming the problem.
    pub async fn start(cli: Cli) -> anyhow::Result<Host> {
        let common = Common::new(std::slice::from_ref(&cli))?;
        Host::start_with(cli, &common, true).await
    }

    /// [`Host::start`] on what the services of the process share; the one
    /// with `metrics_listener` serves the metrics of them all.
    async fn start_with(cli: Cli, common: &Common, metrics_listener: bool) -> anyhow::Result<Host> {
        // The granted directory, as the plugin's WASI sees it and for its
        // appends through the host.
        let (dir, appends) = match &cli.dir {
            Some(dir) if !dir.is_dir() => bail!("--dir {}: not a directory", dir.display()),
            Some(dir) => {
                let granted = GrantedDir::open(dir).map_err(|e| anyhow!("--dir: {e}"))?;
                let appends = Appends::open(dir, cli.max_open_files as usize)
                    .with_context(|| format!("--dir {}", dir.display()))?;
                (Some(granted), Some(Arc::new(appends)))
            }
            None => (None, None),
        };
        let clients = registry_clients(&cli.registry)?;
        let engine = PluginEngine::on(common.engine.clone(), sandbox_settings(&cli, dir));
        let shared = shared_state(&cli, common, appends)?;
        let started = Instant::now();
        let loaded = stamp(cli.plugin_path());
        // While it describes itself the plugin has no name yet and may call
        // nothing.
        let plugin = engine.load(cli.plugin_path(), shared.loading_env()).await?;
        let addr = cli.listen_addr();
        let listener = accept::bind(addr, cli.serve.backlog)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let metrics = match metrics_listener {
            true => bind_metrics(&cli, &shared).await?,
            false => None,
        };
        let (record, active) = identity(&cli, &listener, &shared, plugin)?;
        shared.outbound.set_origin(&record.addr);
        shared.outbound.set_registry(clients.clone());
        tracing::info!(
            service = %record.name,
            plugin = %cli.plugin_path().display(),
            version = %short(&active.plugin.digest),
            requires = ?record.required_services,
            ready_in = ?started.elapsed(),
            "{}",
            protocol::listening::message(listener.local_addr()?)
        );
        let discovery = Discovery::new(
            clients,
            Token::new(cli.token.clone()),
            shared.cache.clone(),
            record,
        );
        let flusher = match (&cli.dir, cli.sync) {
            (Some(dir), true) => Some(Flusher::new(dir)?),
            _ => None,
        };
        let bodies = BodyLimits {
            max: cli.max_body,
            timeout: cli.serve.body_read_timeout,
        };
        let mut app = App::new(engine, shared, discovery, bodies, flusher, active);
        app.access_log = cli.access_log;
        let app = Arc::new(app);
        common.local.add(&app);
        Ok(Host {
            cli,
            app,
            listener,
            metrics,
            loaded,
            local: common.local.clone(),
        })
    }

    /// Where the service listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves, registers, keeps registered, swaps plugin versions; on stop,
    /// deregisters, then lets requests in flight finish.
    pub async fn run(self, control: Control) -> anyhow::Result<()> {
        self.run_until_drained(control).await?.stop();
        Ok(())
    }

    /// [`Host::run`] up to the end of its drain: the service no longer
    /// takes connections and its own requests in flight have finished,
    /// but the other services of the process still call it in process
    /// until [`Drained::stop`].
    async fn run_until_drained(self, control: Control) -> anyhow::Result<Drained> {
        let stopped = control.stopped();
        // The server takes connections until told to close, which is
        // `--stop-grace` after the deregistration.
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        let closed = async {
            let _ = closed.await;
        };
        let (cli, app, mut tasks) = self.spawn_tasks(control, closed);
        // Registration runs while the server already answers: the registry
        // may send a heartbeat or a notification the moment it has the
        // record.
        let mut stopped = std::pin::pin!(stopped);
        let registered = tokio::select! {
            biased;
            () = &mut stopped => None,
            registered = app.discovery.register(cli.registry_wait) => Some(registered),
            ended = tasks.ended() => Some(Err(ended.into())),
        };
        let ending = match registered {
            Some(Err(e)) => {
                app.set_serving(false);
                tasks.abort();
                return Err(e);
            }
            // From now on a registry that forgets us is told again.
            Some(Ok(())) => {
                tasks
                    .essential
                    .spawn("registration watchdog", keep_registered(app.clone(), &cli));
                tokio::select! {
                    biased;
                    () = stopped => Ending::Stopped,
                    ended = tasks.ended() => Ending::Failed(ended),
                }
            }
            // Told to stop while registering: `stopped` has completed, and
            // a completed future must not be awaited again. The
            // registration under way may have been taken all the same (a
            // registry slow to answer): it is withdrawn below as any other.
            None => Ending::Stopped,
        };
        match &ending {
            // Crash-only (see `protocol::essential`), but cleanly: callers
            // are told first and requests in flight finish, as on a stop.
            Ending::Failed(ended) => tracing::error!("{ended}; shutting down"),
            Ending::Stopped => tracing::info!("shutting down"),
        }
        // No swap from now on (one still compiling would only delay the
        // end, and would register again what is deregistered below), and
        // no registering again.
        tasks.essential.shutdown().await;
        // Other processes stop calling it; those of this process still do,
        // in process, until every service of the process has drained.
        app.discovery.deregister().await;
        // The registry tells the callers at once; a caller that picked
        // this instance just before still finds it serving.
        tokio::time::sleep(cli.stop_grace).await;
        let _ = close.send(());
        let metrics_server = tasks
            .drain()
            .await
            .inspect_err(|_| app.set_serving(false))?;
        let drained = Drained {
            app,
            metrics_server,
        };
        match ending {
            Ending::Failed(ended) => {
                drained.stop();
                Err(ended.into())
            }
            Ending::Stopped => Ok(drained),
        }
    }

    /// Starts serving (the service, its metrics) and watching the plugin
    /// file: the server until `closed`, the watcher until `control` says
    /// stop.
    fn spawn_tasks(
        self,
        control: Control,
        closed: impl Future<Output = ()> + Send + 'static,
    ) -> (Cli, Arc<App>, Tasks) {
        let Host {
            cli,
            app,
            listener,
            loaded,
            metrics,
            local,
        } = self;
        let settings = ServeSettings {
            // A request in flight may still wait for a slot, then run for
            // the whole request timeout.
            drain: cli.queue_timeout + cli.request_timeout + Duration::from_secs(1),
            ..cli.serve.clone()
        };
        // Scrapes are answered until the very end, the drain included.
        let metrics_server = metrics.map(|(listener, metrics)| {
            tokio::spawn(metrics::serve(
                listener,
                metrics,
                cli.serve.clone(),
                std::future::pending(),
            ))
        });
        let server = tokio::spawn(server::serve(listener, app.clone(), closed, settings));
        app.set_serving(true);
        let swapper = Swapper {
            app: app.clone(),
            local,
            path: cli.plugin_path().to_owned(),
            overrides: overrides(&cli),
            loaded,
        };
        let mut essential = Essential::new();
        essential.spawn("plugin swapper", swapper.run(control));
        let tasks = Tasks {
            server: Some(server),
            essential,
            metrics_server,
        };
        (cli, app, tasks)
    }
}

/// Why a host that serves stops.
enum Ending {
    /// Told to stop.
    Stopped,
    /// An essential task, or the server, ended.
    Failed(Ended),
}

/// The tasks of a running host.
struct Tasks {
    /// Serves until told to close; `None` once it ended before that.
    server: Option<tokio::task::JoinHandle<()>>,
    /// The plugin swapper, and once registered the registration watchdog:
    /// a host without either would go on serving, but would never swap
    /// again, or never come back once a registry forgot it. One that ends,
    /// like the server, stops the host with an error.
    essential: Essential,
    metrics_server: Option<tokio::task::JoinHandle<()>>,
}

impl Tasks {
    /// Stops everything at once (the host could not start serving).
    fn abort(self) {
        drop(self.essential);
        if let Some(server) = self.server {
            server.abort();
        }
        if let Some(metrics_server) = self.metrics_server {
            metrics_server.abort();
        }
    }

    /// Completes when an essential task ends, or the server before it is
    /// told to close (a bug: it serves until then), which would leave a
    /// host registered that answers nothing, evicted and registered again
    /// by its watchdog without end.
    async fn ended(&mut self) -> Ended {
        let Tasks {
            server, essential, ..
        } = self;
        let server_ended = async {
            let Some(running) = server else {
                return std::future::pending().await;
            };
            let joined = running.await;
            *server = None;
            Ended::of("server", joined)
        };
        tokio::select! {
            ended = essential.ended() => ended,
            ended = server_ended => ended,
        }
    }

    /// Once stopped: lets the server drain; the metrics server is left to
    /// answer until the whole process has drained.
    async fn drain(self) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
        let drained = match self.server {
            Some(server) => server.await.context("server task failed"),
            // It ended already, which is why the host stops.
            None => Ok(()),
        };
        if drained.is_err()
            && let Some(metrics_server) = &self.metrics_server
        {
            metrics_server.abort();
        }
        drained.map(|()| self.metrics_server)
    }
}

/// A service whose own requests have all finished, still callable in
/// process by the other services of its process while they drain theirs.
struct Drained {
    app: Arc<App>,
    metrics_server: Option<tokio::task::JoinHandle<()>>,
}

impl Drained {
    /// Ends it: calls from this process go elsewhere from now on.
    fn stop(self) {
        self.app.set_serving(false);
        if let Some(metrics_server) = self.metrics_server {
            metrics_server.abort();
        }
        tracing::info!("stopped");
    }
}

/// The listener of `--metrics-addr`, with the metrics it serves.
async fn bind_metrics(
    cli: &Cli,
    shared: &Shared,
) -> anyhow::Result<Option<(TcpListener, Arc<HostMetrics>)>> {
    let (Some(addr), Some(metrics)) = (cli.metrics_addr, &shared.metrics) else {
        return Ok(None);
    };
    let listener = accept::bind(addr, cli.serve.backlog)
        .await
        .with_context(|| format!("--metrics-addr: cannot listen on {addr}"))?;
    // Before the `listening on` line, so that whoever waits for that one
    // finds this one too.
    tracing::info!(
        "{}",
        protocol::listening::metrics_message(listener.local_addr()?)
    );
    Ok(Some((listener, metrics.clone())))
}

fn keep_registered(app: Arc<App>, cli: &Cli) -> impl Future<Output = ()> + use<> {
    let timeout = cli.heartbeat_timeout;
    async move { app.discovery.keep_registered(timeout).await }
}

/// One client per `--registry` URL, refusing unusable ones.
fn registry_clients(urls: &[String]) -> anyhow::Result<Vec<RegistryClient>> {
    let urls: Vec<&str> = urls
        .iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        bail!("--registry: no URL given");
    }
    urls.into_iter()
        .map(|url| {
            RegistryClient::new(url, REGISTRY_TIMEOUT).with_context(|| format!("--registry {url}"))
        })
        .collect()
}

fn sandbox_settings(cli: &Cli, dir: Option<GrantedDir>) -> SandboxSettings {
    SandboxSettings {
        request_timeout: cli.request_timeout,
        memory_limit: cli.compiling.memory_limit,
        max_instances: cli.max_instances,
        dir,
        compile_cache: cli.compiling.compile_cache(),
        reuse: cli.reuse,
        max_queue: cli.max_queue as usize,
        queue_timeout: cli.queue_timeout,
    }
}

/// What the host keeps for its plugin across requests and versions.
fn shared_state(
    cli: &Cli,
    common: &Common,
    appends: Option<Arc<Appends>>,
) -> anyhow::Result<Shared> {
    let cache = Arc::new(InstanceCache::with_max(cli.max_known_instances as usize));
    Ok(Shared {
        outbound: Outbound::new(
            cache.clone(),
            common.local.clone(),
            cli.call_timeout,
            cli.max_body,
        ),
        outgoing: Arc::new(OutgoingSettings {
            allow: cli.allow_outbound.clone(),
            client: protocol::http::http_client(),
            timeout: cli.call_timeout,
            max_body: cli.max_body,
            max_hops: cli.max_hops,
        }),
        cache,
        kv: Arc::new(match &cli.state {
            Some(path) => KvStore::open(path, cli.state_limits())?,
            None => KvStore::in_memory(cli.state_limits()),
        }),
        appends,
        metrics: common.metrics.clone(),
    })
}

fn overrides(cli: &Cli) -> Overrides {
    Overrides {
        name: cli.name.clone(),
        requires: cli.requires(),
    }
}

/// The record to register and the version to serve, from what the plugin
/// says of itself and what the command line overrides.
fn identity(
    cli: &Cli,
    listener: &TcpListener,
    shared: &Shared,
    plugin: Plugin,
) -> anyhow::Result<(ServiceRecord, Active)> {
    let (name, requires) = overrides(cli).apply(&plugin)?;
    let addr = match &cli.advertise {
        Some(advertised) => advertised.trim().to_owned(),
        None => listener.local_addr()?.to_string(),
    };
    let record = ServiceRecord::new(name.clone(), addr, requires.clone());
    if let Err(e) = record.validate() {
        let hint = match (&e, &cli.advertise) {
            (RecordError::Unspecified(_), None) => {
                " (give --advertise HOST:PORT, the address others can reach)"
            }
            _ => "",
        };
        bail!("cannot register as '{name}': {e}{hint}");
    }
    let active = Active {
        plugin,
        env: shared.env(name, requires),
    };
    Ok((record, active))
}

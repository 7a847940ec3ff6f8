//! The registry server's lifecycle: pick the store, accept connections, run
//! the heartbeat (every sweep with the in-memory store; only while leading
//! with etcd), and stop cleanly when told to.

use std::future::Future;
use std::io;
use std::sync::Arc;

use hyper::service::service_fn;
use protocol::accept::{self, ServeSettings};
use protocol::essential::{Ended, Essential};
use protocol::http::{HttpClient, http_client};
use protocol::listening;
use protocol::token::Token;
use tokio::net::TcpListener;

use crate::api::Api;
use crate::config::Config;
use crate::heartbeat;
use crate::leader::{Fence, Leadership};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::etcd::{EtcdStore, Keys};
use crate::store::memory::MemoryStore;
use crate::store::{Store, Table};

/// Why the registry could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Etcd(String),
    #[error("{0}")]
    Essential(#[from] Ended),
}

/// Serves the registry on `listener` until `shutdown` completes, then lets
/// the requests in flight finish (for a few seconds at most).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let local_addr = listener.local_addr()?;
    let http = http_client();
    let token = Token::new(config.token.clone());
    let metrics = Arc::new(Metrics::new());
    let api = ApiSettings {
        token: token.clone(),
        serve: config.serve.clone(),
        metrics: Arc::clone(&metrics),
        heartbeat_interval: config.heartbeat_interval,
        own_addr: local_addr,
    };
    let notifier = Notifier::new(
        http.clone(),
        config.notify_timeout,
        token,
        config.notify_queue as usize,
        Arc::clone(&metrics),
    );
    if config.etcd.is_empty() {
        let store = Arc::new(MemoryStore::new(notifier, config.limits()));
        metrics.observe_table(store.clone());
        tracing::info!("{}", listening::message(local_addr));
        let mut essential = Essential::new();
        essential.spawn(
            "heartbeat",
            heartbeat::run(Arc::clone(&store), http, config, false, metrics),
        );
        return serve_api(listener, store, api, &mut essential, shutdown).await;
    }

    let keys = Keys::new(&config.etcd_prefix);
    let fence = Fence::new(keys.leader());
    let (store, registrations) = EtcdStore::connect(
        &config.etcd,
        keys.clone(),
        config.etcd_timeout,
        Table::new(notifier, config.limits()),
        Arc::clone(&metrics),
        fence.clone(),
        config.batching(),
    )
    .await
    .map_err(|e| ServeError::Etcd(e.to_string()))?;
    let store = Arc::new(store);
    metrics.observe_table(store.clone());
    tracing::info!(
        etcd = config.etcd.join(","),
        prefix = config.etcd_prefix,
        "{}",
        listening::message(local_addr)
    );
    let mut essential = Essential::new();
    essential.spawn("etcd watch", Arc::clone(&store).follow());
    essential.spawn(
        "registration committer",
        Arc::clone(&store).commit(registrations),
    );
    let leadership = Arc::new(Leadership::new(
        store.client(),
        fence,
        format!("{local_addr} pid {}", std::process::id()),
        config.leader_ttl,
        config.etcd_timeout,
        Arc::clone(&metrics),
    ));
    {
        let store = Arc::clone(&store);
        let metrics = Arc::clone(&metrics);
        let lead = move || {
            sweeps(
                Arc::clone(&store),
                http.clone(),
                config.clone(),
                Arc::clone(&metrics),
            )
        };
        essential.spawn("leadership", Arc::clone(&leadership).run(lead));
    }
    let served = serve_api(listener, store, api, &mut essential, shutdown).await;
    // The leadership ended with the others, and the sweeps with it; now
    // let the other replicas take over at once.
    leadership.resign().await;
    served
}

/// The sweeps of a replica that just became the leader.
fn sweeps<S: Store>(
    store: Arc<S>,
    http: HttpClient,
    config: Config,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(heartbeat::run(store, http, config, true, metrics))
}

/// What the API needs besides the store.
struct ApiSettings {
    token: Token,
    serve: ServeSettings,
    metrics: Arc<Metrics>,
    heartbeat_interval: std::time::Duration,
    /// Where this registry listens.
    own_addr: std::net::SocketAddr,
}

/// Serves the API until `shutdown` completes or one of the `essential`
/// tasks ends (an error: the replica stops rather than serve without it),
/// then lets the requests in flight finish and stops the tasks.
async fn serve_api<S: Store>(
    listener: TcpListener,
    store: Arc<S>,
    settings: ApiSettings,
    essential: &mut Essential,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let api = Arc::new(Api {
        store,
        token: settings.token,
        body_timeout: settings.serve.body_read_timeout,
        metrics: settings.metrics,
        heartbeat_interval: settings.heartbeat_interval,
        own_addr: settings.own_addr,
    });
    let service_for = |_peer| {
        let api = Arc::clone(&api);
        service_fn(move |request| Arc::clone(&api).handle(request))
    };
    let mut failed = None;
    let stop = async {
        tokio::select! {
            () = shutdown => tracing::info!("shutting down"),
            ended = essential.ended() => {
                tracing::error!("{ended}; shutting down");
                failed = Some(ended);
            }
        }
    };
    accept::serve(listener, &settings.serve, service_for, stop).await;
    essential.shutdown().await;
    failed.map_or(Ok(()), |ended| Err(ended.into()))
}

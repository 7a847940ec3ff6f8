//! The registry server's lifecycle: accept connections, run the heartbeat,
//! and stop cleanly when told to.

use std::future::Future;
use std::io;
use std::sync::Arc;

use hyper::service::service_fn;
use protocol::accept;
use protocol::http::http_client;
use protocol::listening;
use protocol::token::Token;
use tokio::net::TcpListener;

use crate::api::Api;
use crate::config::Config;
use crate::heartbeat;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::table::Table;

/// Serves the registry on `listener` until `shutdown` completes, then lets
/// the requests in flight finish (for a few seconds at most).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    tracing::info!("{}", listening::message(listener.local_addr()?));
    let http = http_client();
    let table = Arc::new(Table::new());
    let metrics = Arc::new(Metrics::new(Arc::clone(&table)));
    let token = Token::new(config.token.clone());
    let serve_settings = config.serve.clone();
    let notifier = Notifier::new(
        http.clone(),
        config.notify_timeout,
        token.clone(),
        Arc::clone(&metrics),
    );
    let heartbeat_interval = config.heartbeat_interval;
    let heartbeat = tokio::spawn(heartbeat::run(
        Arc::clone(&table),
        notifier.clone(),
        http,
        config,
        Arc::clone(&metrics),
    ));
    let api = Arc::new(Api {
        table,
        notifier,
        token,
        metrics,
        heartbeat_interval,
        body_timeout: serve_settings.body_read_timeout,
    });
    let service_for = |_peer| {
        let api = Arc::clone(&api);
        service_fn(move |request| Arc::clone(&api).handle(request))
    };
    let shutdown = async {
        shutdown.await;
        tracing::info!("shutting down");
    };
    accept::serve(listener, &serve_settings, service_for, shutdown).await;
    heartbeat.abort();
    Ok(())
}

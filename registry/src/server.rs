//! The registry server's lifecycle: accept connections, run the heartbeat,
//! and stop cleanly when told to.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::api::Api;
use crate::auth::Token;
use crate::client::http_client;
use crate::config::Config;
use crate::heartbeat;
use crate::listening;
use crate::notify::Notifier;
use crate::table::Table;

/// How long requests in flight may take to finish once shutdown starts.
const GRACE: Duration = Duration::from_secs(5);

/// Pause after a failed `accept` (e.g. out of file descriptors), so that the
/// loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    let token = Token::new(config.token.clone());
    let notifier = Notifier::new(http.clone(), config.notify_timeout, token.clone());
    let heartbeat = tokio::spawn(heartbeat::run(
        Arc::clone(&table),
        notifier.clone(),
        http,
        config,
    ));
    let api = Arc::new(Api {
        table,
        notifier,
        token,
    });
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let api = Arc::clone(&api);
                    let service = service_fn(move |request| Arc::clone(&api).handle(request));
                    let connection = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down");
    heartbeat.abort();
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {GRACE:?}; closing them");
    }
    Ok(())
}

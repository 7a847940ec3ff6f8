//! The accept loop that the registry and the host both run: accept, serve
//! each connection on its own task with HTTP/1, and on shutdown stop
//! accepting and let the requests in flight finish, for a bounded time.
//!
//! Accept errors (usually out of file descriptors) are retried with a
//! doubling pause, so the loop neither spins nor gives up while the
//! condition lasts. At most `--max-connections` are served at once; past
//! that, new ones wait in the kernel's backlog until one ends, and slow
//! clients end soon: each gets `--header-timeout` to send its headers, and
//! handlers read bodies within `--body-timeout` ([`crate::body`]). Once
//! the connections are nearly all taken ([`BUSY`]), a new one must start
//! sending within `--busy-first-byte-timeout` or is closed: a flood of
//! clients that connect and send nothing would otherwise hold the last
//! connections for a whole `--header-timeout` each, while real clients
//! wait in the backlog (as Envoy's overload manager shortens timeouts under
//! pressure). Only the first byte is due sooner: a caller's pooled
//! connection, idle between requests, keeps the usual timeout, which its
//! pool's own idle timeout is set against.
//!
//! Each served connection holds a file descriptor, and so does every call
//! the process makes (heartbeats, notifications, calls to other services)
//! and every file it keeps open. Were `--max-connections` above what the
//! open-file limit leaves, a flood of idle clients would take the
//! descriptors those calls need, and the registry would evict live
//! instances whose heartbeats it could no longer send. So the soft limit is
//! raised to the hard one at start (as Go's runtime does), and the
//! connections served at once, over every listener of the process, are
//! capped to that limit less [`RESERVED_FDS`]. A limit that leaves fewer
//! than [`MIN_CONNECTIONS`] refuses the start ([`bind`]): with a handful of
//! connections, as many idle clients would stop every service of the
//! process, which is worse than not starting.

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::{Arc, OnceLock};

use tokio::net::{TcpListener, TcpSocket, ToSocketAddrs};
use tokio::sync::Semaphore;

use crate::duration::{self, HOUR, MILLISECOND};

/// Descriptors kept for everything but served connections: outgoing calls,
/// files, the listener itself.
pub const RESERVED_FDS: u64 = 256;

/// The fewest connections the open-file limit must leave room for, over all
/// listeners of a process. An idle client holds one until
/// `--header-timeout` (10 s by default), and a process always has a few
/// held: each caller's connection pool, the registry's notifications and
/// heartbeats. Below a few dozen, that many idle or slow clients stop every
/// service of the process; 64 leaves room for those and some, and needs
/// [`RESERVED_FDS`] + 64 = 320 descriptors in all, below the usual default
/// soft limit of 1024.
pub const MIN_CONNECTIONS: u64 = 64;

/// The open-file limit leaves room for too few connections.
#[derive(Debug, thiserror::Error)]
#[error(
    "the open-file limit (ulimit -n) is {limit}: after the {RESERVED_FDS} descriptors kept for \
     calls and files it leaves room for {room} connections at once, fewer than the \
     {MIN_CONNECTIONS} needed so that a few idle clients cannot stop the process; raise it to \
     {needed} or more (ulimit -n {needed})",
    needed = RESERVED_FDS + MIN_CONNECTIONS
)]
pub struct TooFewDescriptors {
    pub limit: u64,
    pub room: u64,
}

/// A listener is busy once fewer than this part of its connections (or of
/// the process's descriptors for connections) are left: one eighth.
const BUSY: usize = 8;

/// The first pause after a failed accept; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A clap value parser for the address a listener binds (`--addr` of the
/// registry and the host, `--metrics-addr`): `IP:PORT` or `[IPv6]:PORT`.
/// A name is not taken: which of its addresses got bound would depend on
/// the resolver.
pub fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "'{text}' is not IP:PORT, like 127.0.0.1:20000 or [::1]:20000 (port 0 picks a free port)"
        )
    })
}

/// How connections are served: the command-line flags that the registry
/// and the host share.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeSettings {
    /// Connections served at once, 1 to 1000000; more wait in the kernel's
    /// backlog until one ends. Over all listeners of the process, at most
    /// the open-file limit less 256.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Connections the kernel holds, once `--max-connections` are served,
    /// until one ends, 1 to 65535; past them a client's connection attempt
    /// is dropped and retried after a second. The kernel caps it at
    /// `net.core.somaxconn`.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub backlog: u32,

    /// A client gets this long to send the headers of a request (and to
    /// start the next one on a kept-alive connection); 1ms to 1h.
    #[arg(long = "header-timeout", value_name = "DURATION", default_value = "10s", value_parser = duration::within(MILLISECOND, HOUR))]
    pub header_read_timeout: Duration,

    /// Once seven eighths of the connections are taken, a new client gets
    /// this long to send its first byte, or its connection is closed, so
    /// that clients that connect and say nothing hold the last ones only
    /// briefly; 1ms to 1h.
    #[arg(long = "busy-first-byte-timeout", value_name = "DURATION", default_value = "1s", value_parser = duration::within(MILLISECOND, HOUR))]
    pub busy_first_byte_timeout: Duration,

    /// A client gets this long to send a request's body (408 after); 1ms to
    /// 1h.
    #[arg(long = "body-timeout", value_name = "DURATION", default_value = "30s", value_parser = duration::within(MILLISECOND, HOUR))]
    pub body_read_timeout: Duration,

    /// How long requests in flight may take to finish once shutdown starts;
    /// past it their connections are closed. Set by each binary.
    #[arg(skip = Duration::from_secs(5))]
    pub drain: Duration,
}

impl Default for ServeSettings {
    /// The defaults written on the flags above, so they live in one place.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            settings: ServeSettings,
        }
        <Defaults as clap::Parser>::parse_from(["serve"]).settings
    }
}

/// A listener on `addr` (the first of its addresses that binds) whose
/// kernel queue holds `backlog` connections; tokio's own `bind` gives 128,
/// which a burst of clients past `--max-connections` fills at once.
///
/// Refused ([`TooFewDescriptors`]) when the open-file limit, raised to its
/// hard limit first, leaves room for fewer than [`MIN_CONNECTIONS`]: every
/// server binds before it serves, so this is where a start stops.
pub async fn bind(addr: impl ToSocketAddrs, backlog: u32) -> std::io::Result<TcpListener> {
    descriptors().enough().map_err(std::io::Error::other)?;
    let mut refused = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // As tokio's `bind`: a port whose last connections linger in
        // TIME-WAIT can be listened on again at once.
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(backlog),
            Err(e) => refused = Some(e),
        }
    }
    Err(refused.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    }))
}

/// Serves every connection accepted on `listener` with the service that
/// `service_for(peer)` makes, until `shutdown` completes; then drains.
pub async fn serve<F, S>(
    listener: TcpListener,
    settings: &ServeSettings,
    service_for: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(SocketAddr) -> S,
    S: HttpService<Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    S::ResBody: Send + 'static,
    <S::ResBody as Body>::Data: Send,
    <S::ResBody as Body>::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(settings.max_connections as usize));
    let descriptors = descriptors().for_listener(settings.max_connections);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = FIRST_BACKOFF;
    loop {
        // One of this listener's connections, and one of the descriptors
        // that every listener of the process shares.
        let permits = async {
            let own = connections.clone().acquire_owned().await?;
            let shared = descriptors.clone().acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>((own, shared))
        };
        let permit = tokio::select! {
            permits = permits => match permits {
                Ok(permits) => permits,
                Err(_closed) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        backoff = FIRST_BACKOFF;
        // Answers are small and written whole: do not let Nagle hold them.
        let _ = stream.set_nodelay(true);
        let busy = scarce(&connections, settings.max_connections as usize)
            || scarce(&descriptors, descriptors_total());
        let first_byte = busy.then_some(settings.busy_first_byte_timeout);
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            // A client may shut down its side once the request is sent
            // (HTTP/1.0 style): it still waits for the answer. Without
            // this hyper took the end of input for the client leaving and
            // dropped the answer, about one time in four.
            .half_close(true);
        let service = service_for(peer);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            if let Some(wait) = first_byte {
                // Readiness alone may be spurious; a byte to peek at is not.
                let mut byte = [0u8];
                if tokio::time::timeout(wait, stream.peek(&mut byte))
                    .await
                    .is_err()
                {
                    tracing::debug!(%peer, "closed a connection that sent nothing within {wait:?} while nearly every connection is taken");
                    return;
                }
            }
            let connection = http.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let drain = settings.drain;
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {drain:?}; closing them");
    }
}

/// The descriptors that the connections of every listener of this process
/// share: the open-file limit (raised to its hard limit first) less
/// [`RESERVED_FDS`].
struct Descriptors {
    /// The open-file limit; `u64::MAX` when it cannot be read.
    limit: u64,
    /// Connections it leaves room for.
    room: u64,
    permits: Arc<Semaphore>,
    /// How many `permits` holds when none is taken.
    total: usize,
}

/// Whether fewer than one [`BUSY`]th of `total` permits are left.
fn scarce(permits: &Semaphore, total: usize) -> bool {
    permits.available_permits().saturating_mul(BUSY) < total
}

/// The permits of the process's descriptors for connections.
fn descriptors_total() -> usize {
    descriptors().total
}

fn descriptors() -> &'static Descriptors {
    static SHARED: OnceLock<Descriptors> = OnceLock::new();
    SHARED.get_or_init(|| {
        let limit = raise_open_files_limit().unwrap_or(u64::MAX);
        let room = limit.saturating_sub(RESERVED_FDS);
        let permits = usize::try_from(room).map_or(Semaphore::MAX_PERMITS, |room| {
            room.min(Semaphore::MAX_PERMITS)
        });
        // A listener served without `bind` (a test's) still gets one.
        Descriptors {
            limit,
            room,
            permits: Arc::new(Semaphore::new(permits.max(1))),
            total: permits.max(1),
        }
    })
}

impl Descriptors {
    fn enough(&self) -> Result<(), TooFewDescriptors> {
        if self.room < MIN_CONNECTIONS {
            return Err(TooFewDescriptors {
                limit: self.limit,
                room: self.room,
            });
        }
        Ok(())
    }

    /// The shared permits, for a listener that would serve `wanted`
    /// connections; says so when they are fewer.
    fn for_listener(&self, wanted: u32) -> Arc<Semaphore> {
        let Descriptors { limit, room, .. } = self;
        if u64::from(wanted) > *room {
            tracing::warn!(
                "the open-file limit is {limit} (ulimit -n): serving at most {room} connections at once \
                 over all listeners rather than --max-connections {wanted}, to keep {RESERVED_FDS} \
                 descriptors for calls and files"
            );
        }
        self.permits.clone()
    }
}

/// Raises the soft limit on open files to the hard one; the limit now, or
/// `None` when it cannot be read.
fn raise_open_files_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_leaving_too_few_connections_is_refused_naming_the_numbers() {
        let descriptors = |limit: u64| Descriptors {
            limit,
            room: limit.saturating_sub(RESERVED_FDS),
            permits: Arc::new(Semaphore::new(1)),
            total: 1,
        };
        let error = descriptors(256).enough().unwrap_err().to_string();
        assert!(
            error.contains("ulimit -n) is 256")
                && error.contains("room for 0 connections")
                && error.contains("fewer than the 64")
                && error.contains("ulimit -n 320"),
            "{error}"
        );
        assert!(descriptors(319).enough().is_err());
        assert!(descriptors(320).enough().is_ok());
        assert!(descriptors(u64::MAX).enough().is_ok());
    }

    #[test]
    fn a_listen_address_is_an_ip_and_a_port() {
        assert_eq!(
            listen_addr("127.0.0.1:0"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 0)))
        );
        assert!(listen_addr("[::1]:20000").is_ok());
        let error = listen_addr("nonsense").unwrap_err();
        assert!(error.contains("'nonsense' is not IP:PORT"), "{error}");
        assert!(listen_addr("127.0.0.1").is_err());
    }
}

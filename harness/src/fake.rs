//! Fake service instances for testing and measuring the registry: each
//! listens on its own loopback port (to the registry an instance is its
//! address), is served by the caller's own runtime, and records the
//! heartbeats (`GET /heart-beat`) and notifications (`POST`/`DELETE
//! /services`) the registry sends it.
//!
//! Every answer closes its connection: the benchmark keeps 10,000 fakes, and
//! as many kept-alive connections would hold another 10,000 descriptors on
//! each side, over the usual hard limit.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use protocol::ServiceRecord;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How a fake instance behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers `GET /heart-beat` and `POST`/`DELETE /services` with 200.
    Healthy,
    /// Accepts connections and never answers anything.
    Hang,
    /// Like `Healthy`, but answers each heartbeat with a 1 MiB body.
    Chatty,
}

/// A notification a fake instance received, decoded as PROTOCOL.md says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub method: Method,
    pub name: String,
    pub addr: String,
    pub received: Instant,
}

struct Seen {
    notifications: Mutex<Vec<Notification>>,
    heartbeats: Mutex<Vec<Instant>>,
    /// How connections accepted from now on are served.
    behaviour: Mutex<Behaviour>,
}

/// One fake instance; stopping or dropping it closes its port and every
/// connection to it.
pub struct FakeService {
    pub addr: String,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl FakeService {
    /// An instance on 127.0.0.1; panics when it cannot listen.
    pub async fn start(behaviour: Behaviour) -> FakeService {
        FakeService::start_on("127.0.0.1", behaviour).await
    }

    /// An instance on another loopback address (e.g. `127.0.0.3`), so that
    /// a port it frees cannot be taken by another test's instance; panics
    /// when it cannot listen.
    pub async fn start_on(ip: &str, behaviour: Behaviour) -> FakeService {
        FakeService::try_start_on(ip, behaviour)
            .await
            .unwrap_or_else(|e| panic!("a fake instance cannot listen on {ip}: {e}"))
    }

    /// An instance on `ip`, or why it cannot listen (out of descriptors,
    /// most likely).
    pub async fn try_start_on(ip: &str, behaviour: Behaviour) -> std::io::Result<FakeService> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?.to_string();
        let seen = Arc::new(Seen {
            notifications: Mutex::default(),
            heartbeats: Mutex::default(),
            behaviour: Mutex::new(behaviour),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&seen)));
        Ok(FakeService { addr, seen, task })
    }

    /// A record for this instance.
    pub fn record(&self, name: &str, required: &[&str]) -> ServiceRecord {
        ServiceRecord::new(
            name,
            self.addr.clone(),
            required.iter().map(|s| s.to_string()).collect(),
        )
    }

    pub fn notifications(&self) -> Vec<Notification> {
        lock(&self.seen.notifications).clone()
    }

    /// The notifications about the instance at `addr`, as (method, name).
    pub fn notifications_about(&self, addr: &str) -> Vec<(Method, String)> {
        self.notifications()
            .into_iter()
            .filter(|n| n.addr == addr)
            .map(|n| (n.method, n.name))
            .collect()
    }

    /// When the first notification came, if one did.
    pub fn first_notification(&self) -> Option<Instant> {
        lock(&self.seen.notifications).first().map(|n| n.received)
    }

    /// How many heartbeats came.
    pub fn heartbeats(&self) -> usize {
        lock(&self.seen.heartbeats).len()
    }

    /// When the first heartbeat at or after `since` came, if one did.
    pub fn first_heartbeat_since(&self, since: Instant) -> Option<Instant> {
        lock(&self.seen.heartbeats)
            .iter()
            .copied()
            .find(|at| *at >= since)
    }

    /// Serves the connections accepted from now on as `behaviour` says
    /// (those already held keep theirs): a service that died and came back
    /// on the same address, or one that recovered.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *lock(&self.seen.behaviour) = behaviour;
    }

    /// Forgets what came so far.
    pub fn clear(&self) {
        lock(&self.seen.notifications).clear();
        lock(&self.seen.heartbeats).clear();
    }

    /// Stops answering: the port is closed once this returns.
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for FakeService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A failed assertion elsewhere must not hide what was seen.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, seen: Arc<Seen>) {
    // Connections live in this task, so aborting it closes them all.
    let mut connections = JoinSet::new();
    let mut hung: Vec<TcpStream> = Vec::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if *lock(&seen.behaviour) == Behaviour::Hang => hung.push(stream),
                Ok((stream, _)) => {
                    let behaviour = *lock(&seen.behaviour);
                    let seen = Arc::clone(&seen);
                    let service =
                        service_fn(move |request| answer(Arc::clone(&seen), behaviour, request));
                    connections.spawn(
                        http1::Builder::new()
                            .keep_alive(false)
                            .serve_connection(TokioIo::new(stream), service),
                    );
                }
                // Out of descriptors, most likely: let connections close.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn answer(
    seen: Arc<Seen>,
    behaviour: Behaviour,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let received = Instant::now();
    let (parts, body) = request.into_parts();
    let status = match (parts.method.clone(), parts.uri.path()) {
        (Method::GET, "/heart-beat") => {
            lock(&seen.heartbeats).push(received);
            StatusCode::OK
        }
        (method @ (Method::POST | Method::DELETE), "/services") => {
            let bytes = body.collect().await.map(|b| b.to_bytes());
            let record: Value = bytes
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            // What a record lacks shows as "" in the test's comparison.
            let field = |name: &str| record[name].as_str().unwrap_or_default().to_owned();
            lock(&seen.notifications).push(Notification {
                method,
                name: field("Name"),
                addr: field("Addr"),
                received,
            });
            StatusCode::OK
        }
        _ => StatusCode::NOT_FOUND,
    };
    let body = match (behaviour, parts.uri.path()) {
        (Behaviour::Chatty, "/heart-beat") => Full::new(Bytes::from(vec![b'x'; 1 << 20])),
        _ => Full::default(),
    };
    let response = Response::builder()
        .status(status)
        .header(header::CONNECTION, "close")
        .body(body)
        .expect("a valid response");
    Ok(response)
}

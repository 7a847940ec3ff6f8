//! Fake service instances for the registry case: one loopback listener per
//! instance (an instance is its address), all served by this process. Each
//! answers 200 to everything and records when it got a heartbeat
//! (`GET /heart-beat`) and a notification (`POST /services`).
//!
//! Every answer closes its connection: 10,000 kept-alive connections would
//! hold another 10,000 descriptors on each side, over the usual hard limit.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// What one fake instance saw.
#[derive(Default)]
pub struct Seen {
    pub heartbeats: Mutex<Vec<Instant>>,
    pub notifications: Mutex<Vec<Instant>>,
}

/// A set of fake instances, stopped when dropped.
pub struct Fakes {
    pub addrs: Vec<SocketAddr>,
    pub seen: Vec<Arc<Seen>>,
    /// Instances that got at least one notification.
    pub notified: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

impl Fakes {
    pub async fn start(count: usize) -> anyhow::Result<Fakes> {
        let notified = Arc::new(AtomicUsize::new(0));
        let mut fakes = Fakes {
            addrs: Vec::with_capacity(count),
            seen: Vec::with_capacity(count),
            notified: notified.clone(),
            tasks: JoinSet::new(),
        };
        for _ in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let seen = Arc::new(Seen::default());
            fakes.addrs.push(listener.local_addr()?);
            fakes.seen.push(seen.clone());
            fakes
                .tasks
                .spawn(accept_loop(listener, seen, notified.clone()));
        }
        Ok(fakes)
    }

    /// Forgets what the instances saw so far.
    pub fn clear(&self) {
        for seen in &self.seen {
            seen.heartbeats.lock().unwrap().clear();
            seen.notifications.lock().unwrap().clear();
        }
        self.notified.store(0, Ordering::SeqCst);
    }
}

async fn accept_loop(listener: TcpListener, seen: Arc<Seen>, notified: Arc<AtomicUsize>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, most likely: let the others drain.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let seen = seen.clone();
        let notified = notified.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                record(&request, &seen, &notified);
                async {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header(header::CONNECTION, "close")
                            .body(Full::new(Bytes::new()))
                            .expect("a valid response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn record(request: &Request<Incoming>, seen: &Seen, notified: &AtomicUsize) {
    let now = Instant::now();
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/heart-beat") => seen.heartbeats.lock().unwrap().push(now),
        (&Method::POST, "/services") => {
            let mut notifications = seen.notifications.lock().unwrap();
            if notifications.is_empty() {
                notified.fetch_add(1, Ordering::SeqCst);
            }
            notifications.push(now);
        }
        _ => {}
    }
}

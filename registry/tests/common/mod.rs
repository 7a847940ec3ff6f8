//! Test harness shared by the integration tests: the real `registry` binary
//! on an ephemeral port, fake services (small HTTP servers that record what
//! the registry sends them), and polling with a deadline.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use protocol::http::{HttpClient, http_client, send};
use protocol::record::ServiceRecord;
use protocol::token::Token;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Generous: the machine may be busy building something else.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Heartbeat settings short enough for tests.
pub const FAST: &[&str] = &[
    "--heartbeat-interval",
    "1s",
    "--heartbeat-attempts",
    "2",
    "--heartbeat-retry-delay",
    "200ms",
    "--notify-timeout",
    "1s",
];

/// Heartbeats that never come during a test.
pub const NO_HEARTBEAT: &[&str] = &["--heartbeat-interval", "1h"];

/// The real binary, killed on drop.
pub struct RegistryProcess {
    child: Child,
    pub addr: SocketAddr,
    pub url: String,
    logs: Arc<Mutex<Vec<String>>>,
    http: HttpClient,
}

impl RegistryProcess {
    /// Starts the binary on `127.0.0.1:0` with extra `args`, and waits for
    /// the address it logs.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_registry"))
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the registry binary");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let kept = Arc::clone(&logs);
        // Keep reading after the address, so the registry never blocks on a
        // full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = protocol::listening::parse(&line) {
                    let _ = tx.send(addr);
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(DEADLINE) {
            Ok(addr) => addr,
            other => {
                let _ = child.kill();
                panic!("no listening address in the log: {other:?}");
            }
        };
        Self {
            child,
            addr,
            url: format!("http://{addr}"),
            logs,
            http: http_client(),
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Sends a signal with `kill -s NAME`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, with a deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "registry still running after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One request to the registry; panics if it gets no answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
    ) -> (StatusCode, String) {
        let url = format!("{}{path}", self.url);
        let (status, body) = send(
            &self.http,
            method,
            &url,
            body.into(),
            Duration::from_secs(10),
            &Token::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Registers `record`, expecting 200; answers the JSON answer.
    pub async fn register(&self, record: &ServiceRecord) -> Value {
        self.send_record(Method::POST, record).await
    }

    pub async fn deregister(&self, record: &ServiceRecord) {
        self.send_record(Method::DELETE, record).await;
    }

    async fn send_record(&self, method: Method, record: &ServiceRecord) -> Value {
        let json = serde_json::to_vec(record).unwrap();
        let (status, body) = self.request(method, "/services", json).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap()
        }
    }

    /// `GET /services`.
    pub async fn services(&self) -> Value {
        let (status, body) = self.request(Method::GET, "/services", Bytes::new()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The addresses of the registered instances of `name`.
    pub async fn addrs_of(&self, name: &str) -> Vec<String> {
        addrs(&self.services().await[name])
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- registry log ---\n{}", self.logs());
        }
    }
}

/// The `Addr` of every record in a JSON array.
pub fn addrs(records: &Value) -> Vec<String> {
    records
        .as_array()
        .map(|list| {
            list.iter()
                .map(|r| r["Addr"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// How a fake service behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers `GET /heart-beat` and `POST`/`DELETE /services` with 200.
    Healthy,
    /// Accepts connections and never answers anything.
    Hang,
}

/// A notification a fake service received, decoded as PROTOCOL.md says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub method: Method,
    pub name: String,
    pub addr: String,
    pub received: Instant,
}

#[derive(Default)]
struct Seen {
    notifications: Mutex<Vec<Notification>>,
    heartbeats: AtomicUsize,
}

/// A service instance on its own port; stopping it closes the listener and
/// every connection.
pub struct FakeService {
    pub addr: String,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl FakeService {
    pub async fn start(behaviour: Behaviour) -> Self {
        Self::start_on("127.0.0.1", behaviour).await
    }

    /// On another loopback address (e.g. `127.0.0.3`), so that a port it
    /// frees cannot be taken by another test's fake service.
    pub async fn start_on(ip: &str, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Seen::default());
        let task = tokio::spawn(accept_loop(listener, behaviour, Arc::clone(&seen)));
        Self { addr, seen, task }
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
        self.seen.notifications.lock().unwrap().clone()
    }

    /// The notifications about the instance at `addr`, as (method, name).
    pub fn notifications_about(&self, addr: &str) -> Vec<(Method, String)> {
        self.notifications()
            .into_iter()
            .filter(|n| n.addr == addr)
            .map(|n| (n.method, n.name))
            .collect()
    }

    pub fn heartbeats(&self) -> usize {
        self.seen.heartbeats.load(Ordering::SeqCst)
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

async fn accept_loop(listener: TcpListener, behaviour: Behaviour, seen: Arc<Seen>) {
    // Connections live in this task, so aborting it closes them all.
    let mut connections = JoinSet::new();
    let mut hung: Vec<TcpStream> = Vec::new();
    loop {
        tokio::select! {
            Ok((stream, _)) = listener.accept() => {
                if behaviour == Behaviour::Hang {
                    hung.push(stream);
                    continue;
                }
                let seen = Arc::clone(&seen);
                let service = service_fn(move |request| answer(Arc::clone(&seen), request));
                connections.spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn answer(
    seen: Arc<Seen>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let status = match (parts.method.clone(), parts.uri.path()) {
        (Method::GET, "/heart-beat") => {
            seen.heartbeats.fetch_add(1, Ordering::SeqCst);
            StatusCode::OK
        }
        (method @ (Method::POST | Method::DELETE), "/services") => {
            let bytes = body.collect().await.unwrap().to_bytes();
            let record: Value = serde_json::from_slice(&bytes).unwrap();
            seen.notifications.lock().unwrap().push(Notification {
                method,
                name: record["Name"].as_str().unwrap().to_string(),
                addr: record["Addr"].as_str().unwrap().to_string(),
                received: Instant::now(),
            });
            StatusCode::OK
        }
        _ => StatusCode::NOT_FOUND,
    };
    let mut response = Response::new(Full::default());
    *response.status_mut() = status;
    Ok(response)
}

/// Polls `check` until it gives a value, failing the test after `timeout`.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `check` holds.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut check = check;
    poll_until(what, DEADLINE, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await
}

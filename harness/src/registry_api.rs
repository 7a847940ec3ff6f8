//! The registry's HTTP API as the tests call it: its table read back over
//! `GET /services`, and, for async tests, a registry process with a client
//! whose every call expects an answer and fails the test without one.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use protocol::ServiceRecord;
use serde_json::Value;

use crate::http::{Client, get, send};
use crate::process::Proc;

/// One request to the registry may take this long.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The `Addr` of every record in a JSON array (none when it is no array).
pub fn addrs(records: &Value) -> Vec<String> {
    records
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|r| r["Addr"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The addresses `registry` lists for `service` (blocking).
pub fn registered(registry: &Proc, service: &str) -> Vec<String> {
    addrs(&get(&registry.url("/services")).json()[service])
}

/// The value of the counter `series` (its name and labels as the text
/// format writes them, `name{label="value"}`) in the metrics text
/// `metrics`: 0 when it has no sample yet.
pub fn counter(metrics: &str, series: &str) -> u64 {
    let prefix = format!("{series} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| {
            n.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{series}: {n:?} is no count: {e}"))
        })
}

/// Whether `registry` lists an instance at `addr`, of any service (blocking;
/// a registry that does not answer lists nothing).
pub fn lists(registry: &Proc, addr: &str) -> bool {
    let Ok(reply) = send(Method::GET, &registry.url("/services"), &[], b"") else {
        return false;
    };
    let table: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    let services = table.as_object().into_iter().flat_map(|s| s.values());
    services.flat_map(addrs).any(|a| a == addr)
}

/// A registry started with [`Proc::registry`], and a client to its API for
/// async tests.
pub struct RegistryProcess {
    pub proc: Proc,
    http: Client,
}

impl RegistryProcess {
    /// [`Proc::registry`] with `extra` settings; panics, with its log, when
    /// it does not start.
    pub fn start(extra: &[&str]) -> RegistryProcess {
        RegistryProcess::of(Proc::registry(extra))
    }

    /// A registry the test started its own way.
    pub fn of(proc: Proc) -> RegistryProcess {
        RegistryProcess {
            proc,
            http: Client::new().timeout(TIMEOUT),
        }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        self.proc.url(path)
    }

    /// One request, answered with its status and body; panics when there
    /// is no answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
    ) -> (StatusCode, String) {
        let url = self.url(path);
        let reply = self
            .http
            .send_json(method, &url, body)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let status = StatusCode::from_u16(reply.status).expect("a status hyper read");
        (status, reply.text())
    }

    /// Registers `record`, expecting 200; the JSON answer.
    pub async fn register(&self, record: &ServiceRecord) -> Value {
        self.send_record(Method::POST, record).await
    }

    /// Deregisters `record`, expecting 200.
    pub async fn deregister(&self, record: &ServiceRecord) {
        self.send_record(Method::DELETE, record).await;
    }

    async fn send_record(&self, method: Method, record: &ServiceRecord) -> Value {
        let json = serde_json::to_vec(record).expect("a record is JSON");
        let (status, body) = self.request(method, "/services", json).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
        }
    }

    /// `GET /services`, expecting 200.
    pub async fn services(&self) -> Value {
        let (status, body) = self.request(Method::GET, "/services", Bytes::new()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    }

    /// The addresses of the registered instances of `name`.
    pub async fn addrs_of(&self, name: &str) -> Vec<String> {
        addrs(&self.services().await[name])
    }
}

//! An HTTP/1 client for talking to the processes under test: async, with
//! keep-alive connections and a deadline on every exchange, and a blocking
//! form so that a test reads as a plain sequence of steps.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long one exchange (request, answer, whole body) may take unless
/// [`Client::timeout`] says otherwise; long, as a test machine is slow.
const TIMEOUT: Duration = Duration::from_secs(60);

/// An answer, body read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics, showing the body, when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A pool of keep-alive connections. Its connections run as tasks of the
/// runtime that opened them: use a client within one runtime only.
#[derive(Clone)]
pub struct Client {
    pool: Pooled<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Client {
    pub fn new() -> Client {
        let mut connector = HttpConnector::new();
        // Small requests go out at once instead of waiting for an ACK.
        connector.set_nodelay(true);
        Client {
            pool: Pooled::builder(TokioExecutor::new()).build(connector),
            timeout: TIMEOUT,
        }
    }

    /// Gives every exchange `timeout` instead of 60 s.
    pub fn timeout(self, timeout: Duration) -> Client {
        Client { timeout, ..self }
    }

    /// Sends one request and reads the whole answer.
    pub async fn send<M>(
        &self,
        method: M,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Reply>
    where
        M: TryInto<Method>,
        M::Error: Into<http::Error>,
    {
        let method: Method = method.try_into().map_err(Into::<http::Error>::into)?;
        let mut request = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body.into()))
            .with_context(|| format!("{method} {url}: not a valid request"))?;
        let exchange = async {
            let (parts, body) = self.pool.request(request).await?.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok(Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .with_context(|| format!("{method} {url}: no answer within {:?}", self.timeout))?
            .with_context(|| format!("{method} {url}"))
    }

    /// [`Client::send`] with a JSON body (`content-type: application/json`
    /// when there is a body), as the registry's own client sends records.
    pub async fn send_json(
        &self,
        method: Method,
        url: &str,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Reply> {
        let body = body.into();
        let json: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[(header::CONTENT_TYPE.as_str(), "application/json")]
        };
        self.send(method, url, json, body).await
    }

    pub async fn get(&self, url: &str) -> anyhow::Result<Reply> {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

/// The runtime and client of the blocking calls, shared by every thread.
/// The runtime's own workers drive the pooled connections between calls,
/// so a connection the server closed (a process killed, then started again
/// on its address) leaves the pool as it closes, instead of failing the
/// next request that would take it.
fn blocking() -> &'static (tokio::runtime::Runtime, Client) {
    static BLOCKING: OnceLock<(tokio::runtime::Runtime, Client)> = OnceLock::new();
    BLOCKING.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("harness-http")
            .enable_all()
            .build()
            .expect("a runtime for the blocking HTTP client");
        (runtime, Client::new())
    })
}

/// [`Client::send`], blocking the thread; not for async code.
pub fn send<M>(method: M, url: &str, headers: &[(&str, &str)], body: &[u8]) -> anyhow::Result<Reply>
where
    M: TryInto<Method>,
    M::Error: Into<http::Error>,
{
    let body = Bytes::copy_from_slice(body);
    let (runtime, client) = blocking();
    runtime.block_on(client.send(method, url, headers, body))
}

/// A blocking GET; panics when there is no answer.
pub fn get(url: &str) -> Reply {
    send(Method::GET, url, &[], b"").unwrap_or_else(|e| panic!("{e:#}"))
}

/// A blocking POST; panics when there is no answer.
pub fn post(url: &str, body: &[u8]) -> Reply {
    send(Method::POST, url, &[], body).unwrap_or_else(|e| panic!("{e:#}"))
}

//! The HTTP client side of the protocol: one pooled HTTP/1 client type, one
//! place that sends a request with a deadline, and `RegistryClient`, which a
//! service uses to register and deregister itself.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::auth::Token;
use crate::body::read_body;
use crate::record::{Instances, ServiceRecord, parse_instances};

/// A pooled HTTP/1 client; cloning it shares the pool.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The largest answer we read. Registration answers list instances, and a
/// `*` registration lists all of them, so this is well above a request body.
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Idle pooled connections are dropped after this; heartbeats every 30 s keep
/// the connections to live services in use.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("no answer within the timeout")]
    Timeout,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("answered status {0}")]
    Status(u16),
    #[error("unusable answer: {0}")]
    BadAnswer(String),
    #[error("bad URL: {0}")]
    BadUrl(String),
}

pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector)
}

/// Sends one request (with the token, if any) and reads the whole answer, all
/// within `timeout`.
pub async fn send(
    http: &HttpClient,
    method: Method,
    url: &str,
    body: Bytes,
    timeout: Duration,
    token: &Token,
) -> Result<(StatusCode, Bytes), ClientError> {
    let mut request = Request::builder().method(method).uri(url);
    if !body.is_empty() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let mut request = request
        .body(Full::new(body))
        .map_err(|e| ClientError::BadUrl(format!("{url}: {e}")))?;
    token.attach(request.headers_mut());
    let exchange = async {
        let response = http.request(request).await.map_err(|e| {
            if e.is_connect() {
                ClientError::Connect(error_chain(&e))
            } else {
                ClientError::Request(error_chain(&e))
            }
        })?;
        let (parts, body) = response.into_parts();
        let bytes = read_body(body, MAX_ANSWER)
            .await
            .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        Ok((parts.status, bytes))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout)?
}

/// Sends a service record as JSON: a registration, a deregistration or a
/// notification, depending on the method and the URL.
pub async fn send_record(
    http: &HttpClient,
    method: Method,
    url: &str,
    record: &ServiceRecord,
    timeout: Duration,
    token: &Token,
) -> Result<(StatusCode, Bytes), ClientError> {
    let json = serde_json::to_vec(record).map_err(|e| ClientError::Request(e.to_string()))?;
    send(http, method, url, json.into(), timeout, token).await
}

/// Registers and deregisters a service with one registry.
#[derive(Clone)]
pub struct RegistryClient {
    http: HttpClient,
    base_url: String,
    services_url: String,
    timeout: Duration,
    token: Token,
}

impl RegistryClient {
    /// `base_url` is `http://host:port`, with or without a trailing slash.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let base_url = base_url.strip_suffix('/').unwrap_or(base_url).to_owned();
        let bad = |why: &str| ClientError::BadUrl(format!("{base_url:?}: {why}"));
        let uri: Uri = base_url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("expected http://host:port"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.host().is_empty() || authority.port_u16().is_none_or(|p| p == 0) {
            return Err(bad("expected http://host:port"));
        }
        if !matches!(uri.path(), "" | "/")
            || uri.query().is_some()
            || authority.as_str().contains('@')
        {
            return Err(bad("expected nothing after host:port"));
        }
        Ok(Self {
            http: http_client(),
            services_url: format!("{base_url}/services"),
            base_url,
            timeout,
            token: Token::default(),
        })
    }

    /// Sends `token` with every registration and deregistration.
    pub fn with_token(mut self, token: Token) -> Self {
        self.token = token;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Registers `record`; answers the current instances of every service it
    /// requires.
    pub async fn register(&self, record: &ServiceRecord) -> Result<Instances, ClientError> {
        let answer = self.send(Method::POST, record).await?;
        parse_instances(&answer).map_err(|e| ClientError::BadAnswer(e.to_string()))
    }

    pub async fn deregister(&self, record: &ServiceRecord) -> Result<(), ClientError> {
        self.send(Method::DELETE, record).await.map(drop)
    }

    async fn send(&self, method: Method, record: &ServiceRecord) -> Result<Bytes, ClientError> {
        let (status, answer) = send_record(
            &self.http,
            method,
            &self.services_url,
            record,
            self.timeout,
            &self.token,
        )
        .await?;
        if status != StatusCode::OK {
            return Err(ClientError::Status(status.as_u16()));
        }
        Ok(answer)
    }
}

/// An error with its causes on one line: hyper's errors say little at the
/// top ("client error (Connect)"); the cause is in their sources.
pub fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn accepts_http_host_port_only() {
        let client = RegistryClient::new("http://127.0.0.1:20000/", T).unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:20000");
        assert_eq!(client.services_url, "http://127.0.0.1:20000/services");
        for bad in [
            "127.0.0.1:20000",
            "https://127.0.0.1:20000",
            "http://127.0.0.1",
            "http://127.0.0.1:0",
            "http://127.0.0.1:20000/x",
            "http://u@127.0.0.1:20000",
            "",
        ] {
            assert!(
                matches!(RegistryClient::new(bad, T), Err(ClientError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn reports_refused_connections() {
        // Bind then drop to get a port that nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = RegistryClient::new(&format!("http://127.0.0.1:{port}"), T).unwrap();
        let err = client
            .register(&ServiceRecord::new("a", "127.0.0.1:1", vec![]))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
    }
}

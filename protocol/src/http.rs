//! The HTTP client side of the protocol: one pooled HTTP/1 client type, one
//! place that sends a request with a deadline, and one reading of what a
//! failed exchange means.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::read_body;
use crate::record::ServiceRecord;
use crate::token::Token;

/// A pooled HTTP/1 client; cloning it shares the pool.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The largest answer we read. Registration answers list instances, and a
/// `*` registration lists all of them, so this is well above a request body.
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Marks a registry's read served from a copy that may be behind: a replica
/// on etcd that lost its watch. What such a read leaves out may still be
/// registered.
pub const STALE_HEADER: &str = "x-sparrow-stale";

/// Idle pooled connections are dropped after this: before the other side
/// closes them (`--header-timeout`, 10 s by default), so that no request is
/// sent on a connection the server has just closed. It holds across a pause
/// of this process too (SIGSTOP, a stalled VM): a connection idle for
/// longer is never taken from the pool, whether or not its close was seen.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

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
    /// A 4xx answer other than 408 and 429: asking again the same way gets
    /// the same answer.
    #[error("refused with status {status}: {reason}")]
    Refused { status: u16, reason: String },
    #[error("unusable answer: {0}")]
    BadAnswer(String),
    /// A read answered from a copy that may be behind ([`STALE_HEADER`]).
    #[error("answered from a copy that may be stale")]
    Stale,
    #[error("bad URL: {0}")]
    BadUrl(String),
}

impl ClientError {
    /// What a non-200 answer means: a refusal when retrying cannot change
    /// it, with the first line of its reason (at most [`MAX_REASON`]
    /// characters); else only its status.
    pub fn from_answer(status: StatusCode, body: &[u8]) -> Self {
        let final_answer = status.is_client_error()
            && status != StatusCode::REQUEST_TIMEOUT
            && status != StatusCode::TOO_MANY_REQUESTS;
        if !final_answer {
            return ClientError::Status(status.as_u16());
        }
        let text = String::from_utf8_lossy(body);
        let reason: String = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .chars()
            .take(MAX_REASON)
            .collect();
        ClientError::Refused {
            status: status.as_u16(),
            reason,
        }
    }

    /// Whether asking again the same way would get the same answer.
    pub fn is_final(&self) -> bool {
        matches!(self, ClientError::Refused { .. })
    }
}

/// The most characters of a refusal's reason that an error repeats.
pub const MAX_REASON: usize = 200;

/// What a failed exchange means for a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The connection was refused: the request never left, so another
    /// instance may be tried whatever the method.
    Refused(String),
    /// The request may have been sent and got no usable answer.
    Broken(String),
}

impl From<hyper_util::client::legacy::Error> for SendError {
    fn from(e: hyper_util::client::legacy::Error) -> Self {
        if e.is_connect() {
            SendError::Refused(error_chain(&e))
        } else {
            SendError::Broken(error_chain(&e))
        }
    }
}

impl From<SendError> for ClientError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Refused(why) => ClientError::Connect(why),
            SendError::Broken(why) => ClientError::Request(why),
        }
    }
}

pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector)
}

/// The largest answer to a heartbeat that is read: the protocol's answer is
/// empty, and 64 heartbeats run at once.
pub const MAX_HEARTBEAT_ANSWER: usize = 4 * 1024;

/// Sends one request (with the token, if any) and reads the whole answer, at
/// most `max_answer` bytes of it, all within `timeout`.
pub async fn send(
    http: &HttpClient,
    method: Method,
    url: &str,
    body: Bytes,
    timeout: Duration,
    token: &Token,
    max_answer: usize,
) -> Result<(StatusCode, Bytes), ClientError> {
    let request = request(method, url, body, token)?;
    send_request(http, request, timeout, max_answer).await
}

/// A request with `body` as JSON, when there is one, and the token, if any.
pub(crate) fn request(
    method: Method,
    url: &str,
    body: Bytes,
    token: &Token,
) -> Result<Request<Full<Bytes>>, ClientError> {
    let mut request = Request::builder().method(method).uri(url);
    if !body.is_empty() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let mut request = request
        .body(Full::new(body))
        .map_err(|e| ClientError::BadUrl(format!("{url}: {e}")))?;
    token.attach(request.headers_mut());
    Ok(request)
}

/// Sends `request` and reads the whole answer, at most `max_answer` bytes
/// of it, all within `timeout`.
pub async fn send_request(
    http: &HttpClient,
    request: Request<Full<Bytes>>,
    timeout: Duration,
    max_answer: usize,
) -> Result<(StatusCode, Bytes), ClientError> {
    let (parts, bytes) = exchange(http, request, timeout, max_answer).await?;
    Ok((parts.status, bytes))
}

/// [`send_request`], with the answer's head.
pub async fn exchange(
    http: &HttpClient,
    request: Request<Full<Bytes>>,
    timeout: Duration,
    max_answer: usize,
) -> Result<(http::response::Parts, Bytes), ClientError> {
    let exchange = async {
        let response = http.request(request).await.map_err(SendError::from)?;
        let (parts, body) = response.into_parts();
        let bytes = read_body(body, max_answer, timeout)
            .await
            .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        Ok((parts, bytes))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout)?
}

/// Sends a service record as JSON: a registration or a deregistration,
/// depending on the method (the registry's notifications are marked, see
/// `registry/src/notify.rs`).
pub async fn send_record(
    http: &HttpClient,
    method: Method,
    url: &str,
    record: &ServiceRecord,
    timeout: Duration,
    token: &Token,
) -> Result<(StatusCode, Bytes), ClientError> {
    let request = record_request(method, url, record, token)?;
    send_request(http, request, timeout, MAX_ANSWER).await
}

/// A request carrying `record` as JSON, and the token, if any.
pub fn record_request(
    method: Method,
    url: &str,
    record: &ServiceRecord,
    token: &Token,
) -> Result<Request<Full<Bytes>>, ClientError> {
    let json = serde_json::to_vec(record).map_err(|e| ClientError::Request(e.to_string()))?;
    request(method, url, json.into(), token)
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

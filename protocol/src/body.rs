//! HTTP body helpers shared by the registry server and the host: bounded
//! reading of request bodies, record decoding, and the two kinds of answers
//! we send (one-line text and JSON).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use serde::Serialize;

use crate::record::ServiceRecord;

/// The largest request body we accept (a record is a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// How much past the bound an oversized body is still read and discarded,
/// so that a client sending it whole sees our `413` instead of a
/// connection reset; past this we just close.
const DRAIN_LIMIT: usize = 16 * MAX_BODY;

/// Why a request body was not usable.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    BadRequest(String),
    #[error("reading the body failed: {0}")]
    Read(String),
    #[error("the body did not arrive within {0:?}")]
    Timeout(std::time::Duration),
}

impl BodyError {
    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::BadRequest(_) | BodyError::Read(_) => StatusCode::BAD_REQUEST,
            BodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// Reads a whole body, refusing more than `limit` bytes or a sender slower
/// than `timeout` for the whole of it.
pub async fn read_body(
    mut body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    // A Content-Length far over the bound is refused before a byte is
    // read: a client that asked `Expect: 100-continue` gets the 413 instead
    // of an invitation to send. One little over it is read and discarded,
    // as a body found too big while it arrives is.
    if let Some(declared) = body.size_hint().exact()
        && declared > limit as u64
    {
        if declared <= (limit + DRAIN_LIMIT) as u64 {
            let _ = tokio::time::timeout(timeout, drain(&mut body, limit + DRAIN_LIMIT)).await;
        }
        return Err(BodyError::TooLarge(limit));
    }
    let read = async {
        match Limited::new(&mut body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge(limit)),
            Err(e) => Err(BodyError::Read(e.to_string())),
        }
    };
    let read = tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(BodyError::Timeout(timeout)));
    if let Err(BodyError::TooLarge(_)) = read {
        // Bounded too: a sender that trickles the rest is not waited for.
        let _ = tokio::time::timeout(timeout, drain(&mut body, DRAIN_LIMIT)).await;
    }
    read
}

/// Reads, decodes and validates a service record.
pub async fn read_record(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<ServiceRecord, BodyError> {
    let bytes = read_body(body, limit, timeout).await?;
    let record: ServiceRecord = serde_json::from_slice(&bytes)
        .map_err(|e| BodyError::BadRequest(format!("malformed service record: {e}")))?;
    record
        .validate()
        .map_err(|e| BodyError::BadRequest(e.to_string()))?;
    Ok(record)
}

/// A `text/plain` answer holding one line.
pub fn text_response(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    let mut line = msg.into().replace(['\r', '\n'], " ");
    line.push('\n');
    with_type(status, line.into(), "text/plain; charset=utf-8")
}

/// A JSON answer.
pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(json) => with_type(status, json.into(), "application/json"),
        // Only a map with non-string keys fails; none of ours has one.
        Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Reads and discards what is left of `body`, `at_most` bytes of it.
async fn drain(body: &mut Incoming, at_most: usize) {
    let mut drained = 0;
    while let Some(Ok(frame)) = body.frame().await {
        drained += frame.data_ref().map_or(0, Bytes::len);
        if drained > at_most {
            break;
        }
    }
}

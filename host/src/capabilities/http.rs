//! `wasi:http/outgoing-handler` for standard (`wasi:http/proxy`) components:
//! where their outgoing requests go.
//!
//! A request to `http://SERVICE/...`, SERVICE being a service the component
//! requires (`--requires`), goes through [`Outbound::call`], the path
//! `call-service` takes: an instance from the cache, retry on a refused
//! connection, the call timeout, hop-by-hop rules, the caller's name and
//! trace. A request to a `HOST:PORT` given with `--allow-outbound` is sent
//! as it is. Anything else is refused with `HTTP-request-denied`, an error
//! the component sees, never a trap. Every call carries the hop count, and
//! one that would pass `--max-hops` is refused with `loop-detected` rather
//! than calling on.
//!
//! [`Outbound::call`]: crate::outbound::Outbound::call

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full, Limited};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::metrics::CallOutcome;
use crate::outbound::{Call, CallFailure, end_to_end};
use crate::plugin::context::ServiceEnv;
use crate::plugin::proxy::{BodyDeadline, timed_body};
use crate::trace::Hop;

/// The hooks of one request's store: who calls, and in which trace.
pub struct OutgoingHttp {
    pub env: Arc<ServiceEnv>,
    pub trace: Option<Hop>,
}

impl OutgoingHttp {
    pub fn new(env: Arc<ServiceEnv>) -> Self {
        OutgoingHttp { env, trace: None }
    }
}

type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutgoingHttp {
    /// A plain `http://SERVICE/` needs no scheme: it is a call inside the
    /// system, never TLS.
    fn default_scheme(&mut self) -> Option<http::uri::Scheme> {
        Some(http::uri::Scheme::HTTP)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Sent {
        let env = self.env.clone();
        let trace = self.trace.clone();
        Box::new(async move {
            let response = route(&env, trace.as_ref(), request).await?;
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// Where a standard component's outgoing request goes: to a service it
/// requires, to an `--allow-outbound` address, or nowhere (refused, as an
/// error of its request), and never past `--max-hops`.
async fn route(
    env: &ServiceEnv,
    trace: Option<&Hop>,
    request: http::Request<WasiBody>,
) -> Result<http::Response<WasiBody>, HttpError> {
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    // A service name has no port; `SERVICE:80` is what some clients write
    // for `http://SERVICE/`.
    let service = authority.strip_suffix(":80").unwrap_or(&authority);
    let to_service = !service.contains(':') && env.may_call(service);
    let allowed = env.outgoing.allow.contains(&authority);
    if !to_service && !allowed {
        env.metrics.call(service, CallOutcome::NotAllowed);
        tracing::warn!(service = %env.name, to = %authority, "outgoing request refused: not a required service nor an --allow-outbound address");
        return Err(HttpError::HttpRequestDenied);
    }
    let (parts, body) = request.into_parts();
    let mut headers = end_to_end(parts.headers);
    headers.remove(http::header::HOST);
    env.mark_call(&authority, trace, &mut headers)
        .map_err(|_| HttpError::LoopDetected)?;
    let body = Limited::new(body, env.outgoing.max_body)
        .collect()
        .await
        .map_err(|_| HttpError::HttpRequestBodySize(None))?
        .to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if to_service {
        let call = Call {
            method: parts.method,
            path,
            headers,
            body,
        };
        return to_required(env, service, call).await;
    }
    direct(env, &authority, parts.method, &path, headers, body).await
}

/// A request to a required service: the same path as `call-service`
/// (in process, or an instance from the cache); its answer, read whole.
async fn to_required(
    env: &ServiceEnv,
    service: &str,
    call: Call,
) -> Result<http::Response<WasiBody>, HttpError> {
    let answer = env.outbound.call(service, call).await;
    env.metrics.call(service, super::outcome(&answer));
    let answer = answer.map_err(|failure| match failure {
        CallFailure::NoInstance => HttpError::DestinationNotFound,
        CallFailure::Unreachable(_) => HttpError::DestinationUnavailable,
        CallFailure::Timeout => HttpError::HttpResponseTimeout,
    })?;
    let mut response = http::Response::new(
        Full::new(answer.body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() =
        http::StatusCode::from_u16(answer.status).map_err(|_| HttpError::HttpProtocolError)?;
    *response.headers_mut() = answer.headers;
    Ok(response)
}

/// A request to an address allowed with `--allow-outbound`: sent as it is,
/// within the call timeout; the answer streams back.
async fn direct(
    env: &ServiceEnv,
    authority: &str,
    method: http::Method,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<http::Response<WasiBody>, HttpError> {
    let uri = format!("http://{authority}{path}");
    let mut request = http::Request::builder()
        .method(method)
        .uri(&uri)
        .body(Full::new(body))
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    *request.headers_mut() = headers;
    request.headers_mut().remove(http::header::CONTENT_LENGTH);
    // The call timeout bounds the whole call, the answer's body included,
    // which the component reads as it arrives.
    let deadline = BodyDeadline::new(std::time::Instant::now(), env.outgoing.timeout);
    let sent =
        tokio::time::timeout(env.outgoing.timeout, env.outgoing.client.request(request)).await;
    let outcome = match &sent {
        Err(_) => CallOutcome::Timeout,
        Ok(Err(_)) => CallOutcome::Unreachable,
        Ok(Ok(_)) => CallOutcome::Answered,
    };
    env.metrics.call(authority, outcome);
    let response = match sent {
        Err(_elapsed) => return Err(HttpError::HttpResponseTimeout),
        Ok(Err(e)) if e.is_connect() => return Err(HttpError::ConnectionRefused),
        Ok(Err(e)) => {
            return Err(HttpError::InternalError(Some(protocol::http::error_chain(
                &e,
            ))));
        }
        Ok(Ok(response)) => response,
    };
    let (mut parts, body) = response.into_parts();
    parts.headers = end_to_end(std::mem::take(&mut parts.headers));
    let body = body.map_err(HttpError::Hyper).boxed_unsync();
    Ok(http::Response::from_parts(
        parts,
        timed_body(body, &deadline),
    ))
}

//! The HTTP server: protocol endpoints (`/heart-beat`, `/services`) are
//! answered by the host itself, everything else goes to the plugin, traced
//! (`trace`) and counted (`metrics`). A `sparrow:service` plugin gets the
//! whole body, read first; a standard `wasi:http` component reads it as it
//! arrives and its answer's body streams to the client. On shutdown it
//! stops accepting and lets in-flight requests finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use protocol::accept::{self, ServeSettings};
use protocol::body::{BodyError, read_body, text_response};
use protocol::locks::{read, write};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::discovery::Discovery;
use crate::durability::Flusher;
use crate::outbound::{end_to_end, header_map};
use crate::plugin::bindings::{self, Header};
use crate::plugin::proxy::{BodyDeadline, BodyFault, HttpCall, limited_body, timed_body};
use crate::plugin::{Failure, Plugin, PluginEngine, ServiceEnv, Shared};
use crate::trace::{self, Hop};
use wasmtime_wasi_http::WasiBody;

/// Headers the host adds to every request a plugin sees (see
/// `wit/service.wit`); clients' headers with this prefix are dropped.
const HOST_HEADER_PREFIX: &str = "x-sparrow-";
/// The address of the client that sent the request.
const CLIENT_ADDR_HEADER: &str = "x-sparrow-client-addr";
/// The address this instance is registered at.
const LOCAL_ADDR_HEADER: &str = "x-sparrow-local-addr";

/// An answer's body: whole, or streaming from a standard component.
pub type AnswerBody = Either<Full<Bytes>, wasmtime_wasi_http::p2::body::HyperOutgoingBody>;

/// The plugin version that serves requests, with its environment.
pub struct Active {
    pub plugin: Plugin,
    pub env: Arc<ServiceEnv>,
}

/// Everything a request handler needs.
pub struct App {
    pub engine: PluginEngine,
    pub shared: Shared,
    pub discovery: Discovery,
    pub bodies: BodyLimits,
    /// With `--sync`: makes the plugin's writes durable before an answer.
    pub flusher: Option<Flusher>,
    /// With `--access-log`: one log line per request for the plugin.
    pub access_log: bool,
    /// Where this instance listens and is registered.
    local_addr: String,
    active: RwLock<Arc<Active>>,
    /// Whether it takes requests: from when its server runs until it is
    /// told to stop. Calls from services of this process go to it only
    /// then.
    serving: AtomicBool,
}

impl App {
    pub fn new(
        engine: PluginEngine,
        shared: Shared,
        discovery: Discovery,
        bodies: BodyLimits,
        flusher: Option<Flusher>,
        active: Active,
    ) -> Self {
        App {
            local_addr: discovery.record().addr,
            engine,
            shared,
            discovery,
            bodies,
            flusher,
            access_log: false,
            active: RwLock::new(Arc::new(active)),
            serving: AtomicBool::new(false),
        }
    }

    /// Where this instance is registered (what a caller connects to).
    pub fn local_addr(&self) -> &str {
        &self.local_addr
    }

    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    /// The version that serves requests from now on. A request holds the
    /// version it started with until it ends.
    pub fn active(&self) -> Arc<Active> {
        read(&self.active).clone()
    }

    /// Sends every new request to `active`; requests in flight finish on the
    /// version they started with.
    pub fn install(&self, active: Active) {
        *write(&self.active) = Arc::new(active);
    }
}

/// How much of a request body is read, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max: usize,
    pub timeout: Duration,
}

/// Serves `listener` until `shutdown` completes, then drains connections.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    settings: ServeSettings,
) {
    let service_for = |peer| {
        fail::fail_point!("host::accept", |_| unreachable!());
        let app = app.clone();
        service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(route(&app, request, peer).await) }
        })
    };
    accept::serve(listener, &settings, service_for, shutdown).await;
}

async fn route(app: &App, request: Request<Incoming>, peer: SocketAddr) -> Response<AnswerBody> {
    let method = request.method();
    let answer = match request.uri().path() {
        "/heart-beat" if method == Method::GET || method == Method::HEAD => {
            app.discovery.heard_heartbeat();
            text_response(StatusCode::OK, "ok")
        }
        "/services" if method == Method::POST || method == Method::DELETE => {
            app.discovery
                .notification(request, app.bodies.timeout)
                .await
        }
        "/heart-beat" | "/services" => {
            text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => return for_plugin(app, request, peer).await,
    };
    answer.map(Either::Left)
}

/// A request for the plugin, inside its trace span, counted once answered.
async fn for_plugin(
    app: &App,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<AnswerBody> {
    let started = Instant::now();
    let hop = Hop::start(request.headers());
    let span = hop.span();
    let (parts, body) = request.into_parts();
    let body = RequestBody::Arriving(body);
    counted(app, started, parts, body, &peer.to_string(), hop)
        .instrument(span)
        .await
}

/// A request from another service of this process (see `local`): it takes
/// the path of a request that came over HTTP, with `client` as the
/// client's address.
pub async fn for_plugin_in_process(
    app: &App,
    parts: http::request::Parts,
    body: Bytes,
    client: &str,
) -> Response<AnswerBody> {
    let started = Instant::now();
    let hop = Hop::start(&parts.headers);
    let span = hop.span();
    counted(app, started, parts, RequestBody::Whole(body), client, hop)
        .instrument(span)
        .await
}

/// A request's body as it reaches the plugin's side.
enum RequestBody {
    /// From a client, still arriving.
    Arriving(Incoming),
    /// From another service of this process, whole.
    Whole(Bytes),
}

impl RequestBody {
    /// The whole body, within `--max-body` (and, arriving, its timeout), or
    /// the answer refusing it.
    async fn read(self, limits: BodyLimits) -> Result<Bytes, Response<Full<Bytes>>> {
        let refused = |e: BodyError| text_response(e.status(), e.to_string());
        match self {
            RequestBody::Arriving(body) => read_body(body, limits.max, limits.timeout)
                .await
                .map_err(refused),
            RequestBody::Whole(body) if body.len() > limits.max => {
                Err(refused(BodyError::TooLarge(limits.max)))
            }
            RequestBody::Whole(body) => Ok(body),
        }
    }

    /// The body as a standard component reads it, cut off past `max`, and,
    /// arriving, once it is not all there by `deadline` (the component's
    /// read fails, as a body read whole is refused with 408).
    fn streaming(self, max: usize, deadline: &BodyDeadline) -> WasiBody {
        match self {
            RequestBody::Arriving(body) => timed_body(limited_body(body, max), deadline),
            RequestBody::Whole(body) => limited_body(Full::new(body), max),
        }
    }
}

/// Serves a request, counted and access-logged for the version that
/// serves it.
async fn counted(
    app: &App,
    started: Instant,
    parts: http::request::Parts,
    body: RequestBody,
    client: &str,
    hop: Hop,
) -> Response<AnswerBody> {
    // The version that serves the request is the one it is counted for.
    let active = app.active();
    let seen = app
        .access_log
        .then(|| (parts.method.clone(), parts.uri.clone()));
    let mut record = Record {
        active: &active,
        started,
        seen,
        status: None,
    };
    let response = if let Some(why) = malformed(&parts) {
        text_response(StatusCode::BAD_REQUEST, why).map(Either::Left)
    } else if active.plugin.takes_http() {
        let deadline = BodyDeadline::new(started, app.bodies.timeout);
        to_component(app, &active, parts, body, deadline, client, hop).await
    } else {
        let answer = match body.read(app.bodies).await {
            Ok(body) => to_plugin(app, &active, &parts, body, client, hop).await,
            Err(refused) => refused,
        };
        answer.map(Either::Left)
    };
    record.status = Some(response.status());
    response
}

/// Why a request is refused before any plugin sees it, if it is: what RFC
/// 9112 (3.2) asks a server to answer 400, and targets only a proxy takes
/// (`CONNECT`'s `host:port`, `OPTIONS *`), which a plugin would see as `/`
/// or could not read at all.
fn malformed(parts: &http::request::Parts) -> Option<&'static str> {
    if parts.method == Method::CONNECT {
        return Some("CONNECT is not served: this is not a proxy");
    }
    if !parts.uri.path().starts_with('/')
        || parts.uri.authority().is_some() && parts.uri.scheme().is_none()
    {
        return Some("the request target must be a path (origin-form), like /a?b");
    }
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if parts.version == http::Version::HTTP_11 => {
            Some("an HTTP/1.1 request needs a Host header")
        }
        (Some(_), Some(_)) => Some("more than one Host header"),
        (Some(host), None)
            if host
                .to_str()
                .ok()
                .and_then(|h| h.parse::<http::uri::Authority>().ok())
                .is_none_or(|h| h.as_str().is_empty()) =>
        {
            Some("the Host header is not a valid host[:port]")
        }
        _ => None,
    }
}

/// Counts and access-logs a request once it is over: answered, or given up
/// by its client (the connection closed first; hyper then drops the
/// request, the instance with it, and nothing after its `.await` runs).
/// A request given up counts as 499, nginx's "client closed request".
struct Record<'a> {
    active: &'a Active,
    started: Instant,
    /// With `--access-log`: the line's method and URI.
    seen: Option<(http::Method, http::Uri)>,
    /// The answer's status, once there is one.
    status: Option<StatusCode>,
}

/// What a request whose client left before the answer is counted as.
const CLIENT_CLOSED: u16 = 499;

impl Drop for Record<'_> {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        let (status, what) = match self.status {
            Some(status) => (status, "answered"),
            None => (
                StatusCode::from_u16(CLIENT_CLOSED).expect("a valid status code"),
                "given up by the client",
            ),
        };
        self.active.env.metrics.request(status, took);
        if let Some((method, uri)) = &self.seen {
            let status = status.as_u16();
            let service = &*self.active.env.name;
            tracing::info!(service, %method, %uri, status, ?took, "{what}");
        }
    }
}

/// A request for a `sparrow:service` plugin: the body is read whole first.
async fn to_plugin(
    app: &App,
    active: &Active,
    parts: &http::request::Parts,
    body: Bytes,
    client: &str,
    hop: Hop,
) -> Response<Full<Bytes>> {
    let request = plugin_request(parts, body, client, &app.local_addr, &hop);
    let service = &*active.env.name;
    let response = match active
        .plugin
        .handle(&app.engine, active.env.clone(), request, hop)
        .await
    {
        Ok(response) => response,
        Err(failure) => return failure_response(service, parts, failure),
    };
    if let Err(refused) = durable(app, service).await {
        return refused;
    }
    from_plugin(response)
}

/// With `--sync`, makes what the plugin wrote durable before it is
/// answered; the answer to send instead when that fails.
async fn durable(app: &App, service: &str) -> Result<(), Response<Full<Bytes>>> {
    if let Some(flusher) = &app.flusher
        && let Err(e) = flusher.flush().await
    {
        tracing::error!(service, error = %e, "cannot flush the plugin's writes");
        return Err(text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("service '{service}' could not make its writes durable"),
        ));
    }
    Ok(())
}

/// A request for a standard component, with the host's headers, as it
/// streams in (by `deadline`); the answer streams out as the component
/// writes it.
async fn to_component(
    app: &App,
    active: &Active,
    mut parts: http::request::Parts,
    body: RequestBody,
    deadline: BodyDeadline,
    client: &str,
    hop: Hop,
) -> Response<AnswerBody> {
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A body known to be too big is refused before any instance runs, as
    // for a plugin that reads its body whole (one little over is read and
    // discarded first, so that a client sending it whole reads the 413);
    // one of unknown length is cut off where it passes the bound.
    if declared.is_some_and(|len| len > app.bodies.max as u64) {
        let refused = body.read(app.bodies).await.err().unwrap_or_else(|| {
            let why = BodyError::TooLarge(app.bodies.max);
            text_response(why.status(), why.to_string())
        });
        return refused.map(Either::Left);
    }
    host_headers(&mut parts.headers, client, &app.local_addr, &hop);
    // wasi:http gives a component the request's authority: an HTTP/1.0
    // client may send none, and this host is what it addressed.
    if parts.uri.authority().is_none()
        && !parts.headers.contains_key(http::header::HOST)
        && let Ok(local) = http::HeaderValue::from_str(&app.local_addr)
    {
        parts.headers.insert(http::header::HOST, local);
    }
    let (method, uri) = (parts.method.clone(), parts.uri.clone());
    let call = HttpCall {
        request: Request::from_parts(parts, body.streaming(app.bodies.max, &deadline)),
        trace: hop,
        body: deadline.clone(),
    };
    let service = &*active.env.name;
    let response = match active
        .plugin
        .handle_http(&app.engine, active.env.clone(), call)
        .await
    {
        Ok(response) => response,
        // The client's body came too slowly for the component, too big or
        // broken, whatever the component then did: the client hears that,
        // as it would from a plugin whose body is read whole.
        Err(failure) if let Some(fault) = deadline.fault() => {
            let why = match fault {
                BodyFault::Late => BodyError::Timeout(app.bodies.timeout),
                BodyFault::TooLarge => BodyError::TooLarge(app.bodies.max),
                BodyFault::Broken => {
                    BodyError::Read("the request body is not valid HTTP, or was cut".into())
                }
            };
            tracing::warn!(service, %method, %uri, "{why}; the component failed: {failure}");
            return text_response(why.status(), why.to_string()).map(Either::Left);
        }
        Err(failure) => {
            let mut seen = Request::new(());
            *seen.method_mut() = method;
            *seen.uri_mut() = uri;
            let (seen, ()) = seen.into_parts();
            return failure_response(service, &seen, failure).map(Either::Left);
        }
    };
    // What the component wrote before it set its response is durable
    // before the client hears of it; what it writes while its body streams
    // is not waited for.
    if let Err(refused) = durable(app, service).await {
        return refused.map(Either::Left);
    }
    response.map(Either::Right)
}

/// The headers a standard component sees: the client's, less those only
/// the host may set, plus the host's own (as for a `sparrow:service`
/// plugin).
fn host_headers(headers: &mut http::HeaderMap, client: &str, local_addr: &str, hop: &Hop) {
    let theirs: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| {
            name.as_str().starts_with(HOST_HEADER_PREFIX) || trace::is_trace_header(name.as_str())
        })
        .cloned()
        .collect();
    for name in theirs {
        headers.remove(name);
    }
    debug_assert!(trace::HOPS_HEADER.starts_with(HOST_HEADER_PREFIX));
    let ours = [
        (CLIENT_ADDR_HEADER, client.to_owned()),
        (LOCAL_ADDR_HEADER, local_addr.to_owned()),
    ];
    for (name, value) in ours.into_iter().chain(hop.plugin_headers()) {
        if let Ok(value) = http::HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
}

/// The request as the plugin sees it, with the host's own headers (the
/// trace headers are the hop's).
fn plugin_request(
    parts: &http::request::Parts,
    body: Bytes,
    client: &str,
    local_addr: &str,
    hop: &Hop,
) -> bindings::Request {
    let header = |name: &str, value: &str| Header {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    bindings::Request {
        method: parts.method.as_str().to_owned(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
        headers: parts
            .headers
            .iter()
            // Only the host speaks for itself: a client cannot pass for it.
            .filter(|(name, _)| !name.as_str().starts_with(HOST_HEADER_PREFIX))
            .filter(|(name, _)| !trace::is_trace_header(name.as_str()))
            .filter_map(|(name, value)| Some(header(name.as_str(), value.to_str().ok()?)))
            .chain([
                header(CLIENT_ADDR_HEADER, client),
                header(LOCAL_ADDR_HEADER, local_addr),
            ])
            .chain(hop.plugin_headers().map(|(name, value)| Header {
                name: name.to_owned(),
                value,
            }))
            .collect(),
        body: body.to_vec(),
    }
}

/// What the client is told when the plugin gave no response; the log line
/// names the service and the request.
fn failure_response(
    service: &str,
    request: &http::request::Parts,
    failure: Failure,
) -> Response<Full<Bytes>> {
    let (method, path) = (request.method.as_str(), request.uri.path());
    match failure {
        Failure::Timeout => {
            tracing::warn!(
                service,
                method,
                path,
                "request stopped at the request timeout"
            );
            text_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!("service '{service}' did not answer in time"),
            )
        }
        Failure::Trap(why) => {
            tracing::error!(service, method, path, "plugin trapped: {why}");
            text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("service '{service}' failed on this request"),
            )
        }
        Failure::Busy => {
            tracing::warn!(
                service,
                method,
                path,
                "every instance slot stayed busy; request refused"
            );
            let mut busy = text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("service '{service}' is overloaded; try again"),
            );
            busy.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
            busy
        }
        Failure::Setup(why) => {
            tracing::error!(service, method, path, "cannot run the plugin: {why}");
            text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("service '{service}' cannot run: {why}"),
            )
        }
    }
}

fn from_plugin(response: bindings::Response) -> Response<Full<Bytes>> {
    let Ok(status) = StatusCode::from_u16(response.status) else {
        tracing::error!(
            status = response.status,
            "plugin answered an invalid status"
        );
        return text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the service answered an invalid status",
        );
    };
    let pairs = response
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_str()));
    let mut headers = match header_map(pairs) {
        Ok(headers) => end_to_end(headers),
        Err(e) => {
            tracing::error!("plugin answered {e}");
            return text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the service answered {e}"),
            );
        }
    };
    headers.remove(http::header::CONTENT_LENGTH);
    let mut answer = Response::new(Full::new(Bytes::from(response.body)));
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    answer
}

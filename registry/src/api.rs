//! The registry's HTTP API: routing and one handler per operation.
//!
//! - `POST /services` registers (upsert by `Name`+`Addr`) and answers the
//!   instances of every required service;
//! - `DELETE /services` deregisters (an unknown instance is not an error);
//! - `GET /services` and `GET /services/{name}` show the table with health
//!   (`{name}` percent-decoded); `GET /services/{name}?consistent` reads
//!   the table's truth rather than this replica's copy;
//! - `GET /metrics` answers the metrics (`metrics`), `GET /` and
//!   `GET /overview` the live page and its data (`page`).
//!
//! `HEAD` is answered wherever `GET` is (RFC 9110): the same handler, whose
//! body hyper leaves out, keeping its `Content-Length`. `CONNECT` asks for
//! a tunnel, which no path of a registry offers: 501.
//!
//! A registry is no service: a record whose `Addr` is this registry's is
//! refused, and so is a registry's notification (a `POST /services` too on
//! the wire, told apart by its mark), which would otherwise be taken for a
//! registration and notified again, without end.
//!
//! A write the store cannot make (etcd unreachable) answers 503 with a
//! one-line reason. Reads answer from the local table; with an etcd store
//! that has lost its watch they carry `x-sparrow-stale: true`. A
//! `?consistent` read the store cannot make answers 503 too.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::metrics::Metrics;
use crate::notify::NOTIFICATION_HEADER;
use crate::page;
use crate::store::{InstanceView, Store};
use protocol::body::{MAX_BODY, json_response, read_record, text_response};
use protocol::http::STALE_HEADER;
use protocol::record::ServiceRecord;
use protocol::token::{Token, unauthorized};

/// The `Allow` of a path that is only read.
const GET: &str = "GET, HEAD";

pub(crate) struct Api<S> {
    pub(crate) store: Arc<S>,
    /// Required on writes when set.
    pub(crate) token: Token,
    /// How long a client may take to send a record.
    pub(crate) body_timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
    /// Shown on the page, which tells how stale a heartbeat is.
    pub(crate) heartbeat_interval: Duration,
    /// Where this registry listens: no record may have it as `Addr`.
    pub(crate) own_addr: SocketAddr,
}

type HttpResponse = Response<Full<Bytes>>;

impl<S: Store> Api<S> {
    pub(crate) async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<HttpResponse, Infallible> {
        let (parts, body) = request.into_parts();
        let method = parts.method;
        if method == Method::CONNECT {
            // Its target is an authority, not a path: no route to name, and
            // no resource to list the methods of in a 405's `Allow`. 501 is
            // the answer to a method supported for no resource at all.
            return Ok(text_response(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "CONNECT {} is not supported: a registry is no proxy and opens no tunnel",
                    parts.uri
                ),
            ));
        }
        let response = match parts.uri.path() {
            "/services"
                if matches!(method, Method::POST | Method::DELETE)
                    && !self.token.admits(&parts.headers) =>
            {
                unauthorized()
            }
            "/services"
                if matches!(method, Method::POST | Method::DELETE)
                    && parts.headers.contains_key(NOTIFICATION_HEADER) =>
            {
                tracing::warn!(%method, "refused a registry's notification: a record's Addr is a registry's");
                text_response(
                    StatusCode::BAD_REQUEST,
                    "this is a registry: a registry's notification is not a registration \
                     (a record's Addr is a registry's address)",
                )
            }
            "/services" => match method {
                Method::POST => self.register(body).await,
                Method::DELETE => self.deregister(body).await,
                Method::GET | Method::HEAD => {
                    self.read(|| json_response(StatusCode::OK, &self.store.table().view()))
                }
                _ => not_allowed("GET, HEAD, POST, DELETE"),
            },
            protocol::metrics::METRICS_PATH => match method {
                Method::GET | Method::HEAD => self.metrics.scrape(),
                _ => not_allowed(GET),
            },
            page::PAGE_PATH => match method {
                Method::GET | Method::HEAD => page::page(),
                _ => not_allowed(GET),
            },
            page::OVERVIEW_PATH => match method {
                Method::GET | Method::HEAD => {
                    self.read(|| page::overview(self.store.table(), self.heartbeat_interval))
                }
                _ => not_allowed(GET),
            },
            path => match path.strip_prefix("/services/") {
                Some(segment) if !segment.is_empty() && !segment.contains('/') => match method {
                    Method::GET | Method::HEAD => match percent_decode(segment) {
                        Ok(name) if asks_consistent(parts.uri.query()) => {
                            self.current_view(&name).await
                        }
                        Ok(name) => self.read(|| self.view_service(&name)),
                        Err(why) => text_response(StatusCode::BAD_REQUEST, why),
                    },
                    _ => not_allowed(GET),
                },
                _ => text_response(StatusCode::NOT_FOUND, format!("no route for {path}")),
            },
        };
        Ok(response)
    }

    async fn register(&self, body: Incoming) -> HttpResponse {
        let record = match decode(body, self.body_timeout).await {
            Ok(record) => record,
            Err(response) => return response,
        };
        if reaches(&record.addr, self.own_addr) {
            return text_response(
                StatusCode::BAD_REQUEST,
                format!(
                    "Addr {:?} is this registry's own address: a registry is no service",
                    record.addr
                ),
            );
        }
        let (name, addr, required) = (
            record.name.clone(),
            record.addr.clone(),
            record.required_services.clone(),
        );
        match self.store.register(record).await {
            Ok(registered) => {
                self.metrics.registered(registered.updated);
                tracing::info!(
                    name,
                    addr,
                    ?required,
                    updated = registered.updated,
                    "registered"
                );
                json_response(StatusCode::OK, &registered.answer)
            }
            Err(e) => {
                tracing::warn!(name, addr, error = %e, "registration failed");
                text_response(e.status(), e.to_string())
            }
        }
    }

    async fn deregister(&self, body: Incoming) -> HttpResponse {
        let record = match decode(body, self.body_timeout).await {
            Ok(record) => record,
            Err(response) => return response,
        };
        let removed = self.store.deregister(&record).await;
        if let Ok(known) = removed {
            self.metrics.deregistered(known);
        }
        match removed {
            Ok(true) => tracing::info!(name = record.name, addr = record.addr, "deregistered"),
            Ok(false) => tracing::debug!(
                name = record.name,
                addr = record.addr,
                "deregistered unknown instance"
            ),
            Err(e) => {
                tracing::warn!(name = record.name, addr = record.addr, error = %e, "deregistration failed");
                return text_response(e.status(), e.to_string());
            }
        }
        Response::new(Full::default())
    }

    /// A read, marked when it may be stale.
    fn read(&self, answer: impl FnOnce() -> HttpResponse) -> HttpResponse {
        let mut response = answer();
        if self.store.stale() {
            response
                .headers_mut()
                .insert(STALE_HEADER, HeaderValue::from_static("true"));
        }
        response
    }

    fn view_service(&self, name: &str) -> HttpResponse {
        service_response(name, self.store.table().view_service(name))
    }

    /// `GET /services/{name}?consistent`: the truth now, or 503.
    async fn current_view(&self, name: &str) -> HttpResponse {
        match self.store.current_view(name).await {
            Ok(instances) => service_response(name, instances),
            Err(e) => {
                tracing::debug!(name, error = %e, "cannot read the table's truth");
                text_response(e.status(), e.to_string())
            }
        }
    }
}

/// Reads a record, or the error answer to send instead.
async fn decode(body: Incoming, timeout: Duration) -> Result<ServiceRecord, HttpResponse> {
    read_record(body, MAX_BODY, timeout).await.map_err(|e| {
        tracing::debug!(error = %e, "rejected a service record");
        text_response(e.status(), e.to_string())
    })
}

/// Whether the (valid) address `addr` reaches the listener at `own`: the
/// same socket address, a loopback one when `own` is every interface, or
/// `localhost` when `own` is the loopback address. Other names of this
/// registry are not known here; their notifications are refused all the
/// same (see the module doc).
fn reaches(addr: &str, own: SocketAddr) -> bool {
    let own_ip = own.ip().to_canonical();
    if let Ok(addr) = addr.parse::<SocketAddr>() {
        let ip = addr.ip().to_canonical();
        return addr.port() == own.port()
            && (ip == own_ip || (own_ip.is_unspecified() && ip.is_loopback()));
    }
    addr.rsplit_once(':').is_some_and(|(host, port)| {
        host.eq_ignore_ascii_case("localhost")
            && port.parse() == Ok(own.port())
            && (own_ip.is_unspecified()
                || own_ip == std::net::Ipv4Addr::LOCALHOST
                || own_ip == std::net::Ipv6Addr::LOCALHOST)
    })
}

/// A path segment, percent-decoded (`%C3%BC` is `ü`, `%3F` is `?`): what
/// a client must send for a name with characters a path cannot hold as
/// they are. The decoded bytes must be UTF-8.
fn percent_decode(segment: &str) -> Result<String, String> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            decoded.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        let Some(byte) = hex else {
            return Err(format!(
                "{segment:?} has a '%' without two hex digits after it (write '%' as %25)"
            ));
        };
        decoded.push(byte);
        i += 3;
    }
    String::from_utf8(decoded).map_err(|_| format!("{segment:?} is not UTF-8 once percent-decoded"))
}

fn not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// One service's instances as `GET /services/{name}` answers them.
fn service_response(name: &str, instances: Option<Vec<InstanceView>>) -> HttpResponse {
    match instances {
        Some(instances) => json_response(StatusCode::OK, &instances),
        None => text_response(
            StatusCode::NOT_FOUND,
            format!("no instance of service {name:?} is registered"),
        ),
    }
}

/// Whether a read asks for the table's truth rather than this replica's
/// copy: `?consistent`, as Consul spells it (any value, or none).
fn asks_consistent(query: Option<&str>) -> bool {
    query.is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some("consistent"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_asks_for_the_truth_with_consistent_in_its_query() {
        for asks in [
            "consistent",
            "consistent=",
            "consistent=true",
            "a=1&consistent",
        ] {
            assert!(asks_consistent(Some(asks)), "{asks}");
        }
        for not in [
            "",
            "stale",
            "consistently",
            "a=consistent",
            "x_consistent=1",
        ] {
            assert!(!asks_consistent(Some(not)), "{not}");
        }
        assert!(!asks_consistent(None));
    }

    #[test]
    fn decodes_a_path_segment() {
        assert_eq!(percent_decode("log").as_deref(), Ok("log"));
        assert_eq!(
            percent_decode("%C3%BCn%C3%AF%E6%97%A5%E6%9C%AC").as_deref(),
            Ok("ünï日本")
        );
        assert_eq!(percent_decode("ünï").as_deref(), Ok("ünï"));
        assert_eq!(percent_decode("a%3fb%23c%25d").as_deref(), Ok("a?b#c%d"));
        assert_eq!(percent_decode("a+b").as_deref(), Ok("a+b"));
        for bad in ["%", "a%2", "%zz", "%+1", "%C3", "%FF", "%C3%28"] {
            assert!(percent_decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn knows_its_own_address() {
        let own: SocketAddr = "127.0.0.1:20000".parse().unwrap();
        for addr in [
            "127.0.0.1:20000",
            "localhost:20000",
            "LOCALHOST:20000",
            "[::ffff:127.0.0.1]:20000",
        ] {
            assert!(reaches(addr, own), "{addr}");
        }
        for addr in [
            "127.0.0.2:20000",
            "127.0.0.1:20001",
            "[::1]:20000",
            "h:20000",
        ] {
            assert!(!reaches(addr, own), "{addr}");
        }
        let any: SocketAddr = "0.0.0.0:20000".parse().unwrap();
        for addr in ["127.0.0.9:20000", "localhost:20000", "[::1]:20000"] {
            assert!(reaches(addr, any), "{addr}");
        }
        assert!(!reaches("127.0.0.9:20001", any));
        let other: SocketAddr = "127.0.0.5:20000".parse().unwrap();
        assert!(!reaches("localhost:20000", other));
    }
}

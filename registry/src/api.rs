//! The registry's HTTP API: routing and one handler per operation.
//!
//! - `POST /services` registers (upsert by `Name`+`Addr`) and answers the
//!   instances of every required service;
//! - `DELETE /services` deregisters (an unknown instance is not an error);
//! - `GET /services` and `GET /services/{name}` show the table with health;
//! - `GET /metrics` answers the metrics (`metrics`), `GET /` and
//!   `GET /overview` the live page and its data (`page`).
//!
//! A write the store cannot make (etcd unreachable) answers 503 with a
//! one-line reason. Reads answer from the local table; with an etcd store
//! that has lost its watch they carry `x-sparrow-stale: true`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::metrics::Metrics;
use crate::page;
use crate::store::Store;
use protocol::body::{MAX_BODY, json_response, read_record, text_response};
use protocol::record::ServiceRecord;
use protocol::token::{Token, unauthorized};

/// Marks a read served from a copy that may be behind (see the module doc).
const STALE_HEADER: &str = "x-sparrow-stale";

pub(crate) struct Api<S> {
    pub(crate) store: Arc<S>,
    /// Required on writes when set.
    pub(crate) token: Token,
    /// How long a client may take to send a record.
    pub(crate) body_timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
    /// Shown on the page, which tells how stale a heartbeat is.
    pub(crate) heartbeat_interval: Duration,
}

type HttpResponse = Response<Full<Bytes>>;

impl<S: Store> Api<S> {
    pub(crate) async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<HttpResponse, Infallible> {
        let (parts, body) = request.into_parts();
        let method = parts.method;
        let response = match parts.uri.path() {
            "/services"
                if matches!(method, Method::POST | Method::DELETE)
                    && !self.token.admits(&parts.headers) =>
            {
                unauthorized()
            }
            "/services" => match method {
                Method::POST => self.register(body).await,
                Method::DELETE => self.deregister(body).await,
                Method::GET => {
                    self.read(|| json_response(StatusCode::OK, &self.store.table().view()))
                }
                _ => not_allowed("GET, POST, DELETE"),
            },
            protocol::metrics::METRICS_PATH => match method {
                Method::GET => self.metrics.scrape(),
                _ => not_allowed("GET"),
            },
            page::PAGE_PATH => match method {
                Method::GET => page::page(),
                _ => not_allowed("GET"),
            },
            page::OVERVIEW_PATH => match method {
                Method::GET => {
                    self.read(|| page::overview(self.store.table(), self.heartbeat_interval))
                }
                _ => not_allowed("GET"),
            },
            path => match path.strip_prefix("/services/") {
                Some(name) if !name.is_empty() && !name.contains('/') => match method {
                    Method::GET => self.read(|| self.view_service(name)),
                    _ => not_allowed("GET"),
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
                text_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
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
                return text_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
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
        match self.store.table().view_service(name) {
            Some(instances) => json_response(StatusCode::OK, &instances),
            None => text_response(
                StatusCode::NOT_FOUND,
                format!("no instance of service {name:?} is registered"),
            ),
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

fn not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

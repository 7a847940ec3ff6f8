//! The baseline: a plain hyper server giving the echo stub's answers (the
//! body echoed with `x-echo-method` and `x-echo-path`, `v1` on `/version`),
//! with none of Sparrow around it. `bench serve-baseline --addr A` runs it as
//! its own process, so that it competes for the cores like a host does.
//!
//! With `--next B` it is instead a plain hyper proxy: each request goes to
//! `B` with the same method, path and body over a pooled keep-alive client,
//! and `B`'s status and body come back. Three such processes in a row (two
//! proxies and an echo) are what any chain of three HTTP services costs on
//! this machine, loopback and wake-ups included, with nothing of Sparrow:
//! the ceiling for `end-to-end`'s three processes.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::StatusCode;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Answers like the echo stub or, given `next`, forwards to it.
pub async fn serve(addr: SocketAddr, next: Option<SocketAddr>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!(
        "baseline {}",
        harness::listening::message(listener.local_addr()?)
    );
    let proxy = next.map(Proxy::new);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            let http = hyper::server::conn::http1::Builder::new();
            let _ = match proxy {
                Some(proxy) => {
                    let forward = service_fn(move |request| proxy.clone().forward(request));
                    http.serve_connection(io, forward).await
                }
                None => http.serve_connection(io, service_fn(echo)).await,
            };
        });
    }
}

/// Forwards requests to the next server of a chain.
#[derive(Clone)]
struct Proxy {
    client: Client<HttpConnector, Full<Bytes>>,
    next: SocketAddr,
}

impl Proxy {
    fn new(next: SocketAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Proxy {
            client: Client::builder(TokioExecutor::new()).build(connector),
            next,
        }
    }

    async fn forward(
        self,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let answer = async {
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let forwarded = Request::builder()
                .method(parts.method)
                .uri(format!("http://{}{path}", self.next))
                .body(Full::new(body))?;
            let (parts, body) = self.client.request(forwarded).await?.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok(Response::from_parts(parts, Full::new(body)))
        };
        Ok(answer.await.unwrap_or_else(|e| {
            let mut failed = Response::new(Full::new(Bytes::from(format!("{e:#}"))));
            *failed.status_mut() = StatusCode::BAD_GATEWAY;
            failed
        }))
    }
}

async fn echo(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let response = if parts.uri.path() == "/version" {
        Response::new(Full::new(Bytes::from_static(b"v1")))
    } else {
        Response::builder()
            .header("x-echo-method", parts.method.as_str())
            .header("x-echo-path", path)
            .body(Full::new(body))
            .expect("a valid response")
    };
    Ok(response)
}

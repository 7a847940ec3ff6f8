//! The baseline: a plain hyper server giving the echo stub's answers (the
//! body echoed with `x-echo-method` and `x-echo-path`, `v1` on `/version`),
//! with none of Sparrow around it. `bench serve-baseline --addr A` runs it as
//! its own process, so that it competes for the cores like a host does.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!(
        "baseline {}",
        harness::listening::message(listener.local_addr()?)
    );
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(echo))
                .await;
        });
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

//! Single requests (set-up, polling), through a pooled hyper client.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// One request may take this long before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(10);

fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client::builder(TokioExecutor::new()).build(connector)
    })
}

/// Sends one request; the status and the whole body.
pub async fn send(method: Method, url: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
    let mut request = Request::builder().method(method).uri(url);
    if !body.is_empty() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(Full::new(body))?;
    let exchange = async {
        let response = client().request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .with_context(|| format!("{url}: no answer within {TIMEOUT:?}"))?
        .with_context(|| url.to_owned())
}

pub async fn get(url: &str) -> anyhow::Result<(u16, Bytes)> {
    send(Method::GET, url, Bytes::new()).await
}

/// GETs `url` every `every` until it answers 200 with `body` (any body when
/// `None`); the time that took, or an error after `timeout`.
pub async fn poll_for(
    url: &str,
    body: Option<&str>,
    every: Duration,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let last = match get(url).await {
            Ok((200, got)) if body.is_none_or(|b| got == b.as_bytes()) => {
                return Ok(started.elapsed());
            }
            Ok((status, got)) => format!("{status} {}", String::from_utf8_lossy(&got)),
            Err(e) => format!("{e:#}"),
        };
        if started.elapsed() > timeout {
            anyhow::bail!("{url}: not the expected answer within {timeout:?} (last: {last})");
        }
        tokio::time::sleep(every).await;
    }
}

//! A standard `wasi:http/proxy` component written only against `wstd` (and
//! `futures-lite` for a streamed body): nothing in it knows Sparrow, and
//! `wasmtime serve` runs the same file. Sparrow runs it with
//! `host --plugin plugins/hello-http.wasm --name hello`.
//!
//! - `GET /hello/{who}`: a greeting, with `x-hello: wasi:http/proxy`.
//! - `POST /echo`: the request body back, streamed as it arrives.
//! - `GET /stream?chunks=N&size=S&pause=MS`: N chunks of S bytes, each
//!   written after a pause: a body that is never whole in memory.
//! - `GET /call/{service}/{path}`: `GET http://{service}/{path}`, whose
//!   status and body it answers; 502 with the error when the request fails
//!   (an undeclared destination, a loop ...).
//!
//! Built with `STUB_FAULTS=1` (the tests' `http-faults` stub), it also
//! misbehaves on purpose: `/trap` panics, `/spin` never answers.

use std::time::Duration;

use wstd::http::body::Bytes;
use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    // Behind Sparrow's gateway the path still starts with the service's
    // prefix, which the gateway names.
    let prefix = request
        .headers()
        .get("x-forwarded-prefix")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let path = request.uri().path();
    let path = path
        .strip_prefix(prefix)
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(path)
        .to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    if option_env!("STUB_FAULTS").is_some() {
        match path.as_str() {
            "/trap" => panic!("asked to trap"),
            "/spin" => spin(),
            _ => {}
        }
    }
    if let Some(who) = path.strip_prefix("/hello/") {
        return Ok(Response::builder()
            .header("x-hello", "wasi:http/proxy")
            .header("content-type", "text/plain; charset=utf-8")
            .body(format!("Hello, {who}!\n").into())?);
    }
    if path == "/echo" {
        let method = request.method().to_string();
        let body = request.into_body();
        return Ok(Response::builder()
            .header("x-echo-method", method)
            .body(body)?);
    }
    if path == "/stream" {
        return stream(&query);
    }
    if let Some(rest) = path.strip_prefix("/call/") {
        return call(rest).await;
    }
    Ok(Response::builder()
        .status(StatusCode::NOT_FOUND)
        .body("no such page\n".into())?)
}

fn stream(query: &str) -> Result<Response<Body>, Error> {
    let param = |name: &str, default: u64| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(default)
    };
    let (chunks, size, pause) = (param("chunks", 4), param("size", 16), param("pause", 0));
    let chunk = Bytes::from(vec![b'x'; size as usize]);
    let body = futures_lite::stream::unfold(0, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent == chunks {
                return None;
            }
            if pause > 0 {
                wstd::task::sleep(Duration::from_millis(pause).into()).await;
            }
            Some((chunk, sent + 1))
        }
    });
    Ok(Response::new(Body::from_stream(body)))
}

async fn call(rest: &str) -> Result<Response<Body>, Error> {
    let url = format!("http://{rest}");
    let request = Request::get(&url).body(Body::empty())?;
    match Client::new().send(request).await {
        Ok(response) => {
            let status = response.status();
            let body = response.into_body().bytes_contents().await?;
            Ok(Response::builder().status(status).body(body.into())?)
        }
        Err(e) => Ok(Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(format!("request to {url} failed: {e}\n").into())?),
    }
}

/// Never answers: the host must stop it at the request timeout.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

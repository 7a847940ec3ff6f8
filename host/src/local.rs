//! Calls between services of one host process: a call to a service this
//! process runs (and that is serving) goes to a fresh instance of it in
//! process, with no socket and no HTTP encoding, and means what the same
//! call over HTTP would.
//!
//! The callee gets the request a remote host would have parsed: the same
//! end-to-end headers (hop-by-hop ones and those `Connection` names
//! dropped), `Host` and `Content-Length` as the HTTP client sets them, its
//! own `x-sparrow-*` headers (the client address is the calling service's
//! registered address) and its own trace hop. It runs as a task of its own,
//! so that a caller that gives up at its call timeout leaves it running to
//! its own request timeout, as a remote callee would be. Its answer comes
//! back with the headers its HTTP server would add (`Content-Length`,
//! `Date`), read within the caller's `--max-body`.

use std::sync::{Arc, RwLock, Weak};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, DATE, HOST};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Limited};
use protocol::locks::{read, write};
use tokio::sync::MutexGuard;

use crate::outbound::{Answer, Call, CallFailure, end_to_end};
use crate::server::{self, App};

/// The services this process runs, for its own calls to find.
#[derive(Default)]
pub struct LocalServices {
    /// Weak: each service's calls reach this list through its own `App`.
    apps: RwLock<Vec<Weak<App>>>,
    /// Held by a swap from the check that no other service of the process
    /// has its name until the new version is installed, so that two swaps
    /// at once cannot both take one name.
    naming: tokio::sync::Mutex<()>,
}

impl LocalServices {
    pub fn new() -> Arc<Self> {
        Arc::new(LocalServices::default())
    }

    pub fn add(&self, app: &Arc<App>) {
        write(&self.apps).push(Arc::downgrade(app));
    }

    /// The service registered as `name`, if this process runs it and it is
    /// serving. The list holds a few services: a scan is cheaper than
    /// keeping a map in step with swaps that rename a service.
    pub fn find(&self, name: &str) -> Option<Arc<App>> {
        read(&self.apps)
            .iter()
            .filter_map(Weak::upgrade)
            .find(|app| app.serving() && *app.active().env.name == *name)
    }

    /// Lets `app` take the name `name`, refused when another service of
    /// this process (serving or not) has it. The name stays `app`'s to
    /// install until the claim is dropped: other claims wait for it.
    pub async fn claim(&self, app: &App, name: &str) -> anyhow::Result<MutexGuard<'_, ()>> {
        let claim = self.naming.lock().await;
        let taken = read(&self.apps)
            .iter()
            .filter_map(Weak::upgrade)
            .any(|other| !std::ptr::eq(&*other, app) && *other.active().env.name == *name);
        if taken {
            anyhow::bail!("another service of this host is named '{name}'");
        }
        Ok(claim)
    }
}

/// Sends `call` to `app` in process, as if from the client address `from`;
/// an answer longer than `max_body` is refused as over HTTP.
pub async fn call(
    app: Arc<App>,
    call: Call,
    from: &str,
    max_body: usize,
) -> Result<Answer, CallFailure> {
    let to = app.local_addr().to_owned();
    let mut request = Request::builder()
        .method(call.method.clone())
        .uri(&call.path)
        .body(())
        .map_err(|e| {
            CallFailure::Unreachable(format!("cannot build request for {to}{}: {e}", call.path))
        })?;
    let headers = request.headers_mut();
    *headers = end_to_end(call.headers);
    // What the HTTP client would set for the message it sends: `Host` from
    // the address, `Content-Length` for a body that is not empty.
    if let Ok(host) = HeaderValue::from_str(&to) {
        headers.insert(HOST, host);
    }
    headers.remove(CONTENT_LENGTH);
    if !call.body.is_empty() {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(call.body.len()));
    }
    let (parts, ()) = request.into_parts();
    let (body, from) = (call.body, from.to_owned());
    // Boxed: the future holds a whole request's state, which the task would
    // otherwise copy on spawning.
    let served = tokio::spawn(Box::pin(async move {
        server::for_plugin_in_process(&app, parts, body, &from).await
    }));
    let response = served
        .await
        .map_err(|e| CallFailure::Unreachable(format!("{to}: the call failed: {e}")))?;
    let (parts, body) = response.into_parts();
    // A standard component's answer streams: read it as the HTTP client
    // would, within the bound.
    let body: Bytes = match Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Err(CallFailure::Unreachable(format!(
                "{to}: reading the answer: {e}"
            )));
        }
    };
    let mut headers = end_to_end(parts.headers);
    // What the callee's HTTP server would have added.
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())) {
        headers.insert(DATE, date);
    }
    Ok(Answer {
        status: parts.status.as_u16(),
        headers,
        body,
    })
}

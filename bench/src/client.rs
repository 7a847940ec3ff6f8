//! The benchmark's single requests (set-up, polling for an answer), through
//! one pooled client of the harness.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::Deadline;
use harness::http::{Client, Reply};
use http::Method;

/// One request may take this long before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The benchmark has one runtime for its whole run, which the client's
/// connections belong to.
pub fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| Client::new().timeout(TIMEOUT))
}

/// Sends one request; the body, when there is one, is JSON.
pub async fn send(method: Method, url: &str, body: Bytes) -> anyhow::Result<Reply> {
    client().send_json(method, url, body).await
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
    let last = RefCell::new(String::new());
    let (last_seen, expected) = (&last, body);
    let answered = Deadline::after(timeout)
        .every(every)
        .poll_async(|| async move {
            match client().get(url).await {
                Ok(reply)
                    if reply.status == 200
                        && expected.is_none_or(|b| reply.body == b.as_bytes()) =>
                {
                    return Some(started.elapsed());
                }
                Ok(reply) => *last_seen.borrow_mut() = format!("{} {}", reply.status, reply.text()),
                Err(e) => *last_seen.borrow_mut() = format!("{e:#}"),
            }
            None
        })
        .await;
    answered.ok_or_else(|| {
        anyhow::anyhow!(
            "{url}: not the expected answer within {timeout:?} (last: {})",
            last.borrow()
        )
    })
}

//! HTTP calls from this host to other services, on behalf of the plugin.
//!
//! One place decides which instance gets a call, what is retried, how long a
//! call may take and which headers never cross a hop, so that every
//! capability that talks to another service (`call-service`, `log-println`)
//! behaves the same. [`Outbound::call`] is the only way out: a service this
//! process runs itself is called in process (`local`), any other through
//! the instance cache over HTTP.
//!
//! An instance that times out or breaks a call is asked about: if the
//! registry no longer lists it, it leaves the cache. The registry may have
//! dropped it while its `DELETE` could not reach this process (a registry
//! restarted meanwhile, this process paused): a hung instance refuses no
//! connection, so nothing else would ever take it out, and every call
//! picking it would wait for the call timeout.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::discovery::cache::InstanceCache;
use crate::local::{self, LocalServices};
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use protocol::http::{HttpClient, SendError};
use protocol::locks::lock;
use protocol::record::ServiceRecord;
use protocol::registry_client::RegistryClient;
use tokio::time::{Instant, timeout_at};

/// Headers that describe one connection, not the message: a proxy must not
/// forward them (RFC 9110, section 7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A request to send to some instance of a service.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What an instance answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// No live instance of the service is known.
    NoInstance,
    /// Every instance tried refused or broke the connection.
    Unreachable(String),
    /// The instance did not answer within the call timeout.
    Timeout,
}

/// Sends calls to this process's own services, or to instances picked from
/// the instance cache.
#[derive(Clone)]
pub struct Outbound {
    http: HttpClient,
    cache: Arc<InstanceCache>,
    /// The services of this process.
    local: Arc<LocalServices>,
    /// The calling service's registered address, once it is bound: the
    /// client address a service of this process sees for its calls.
    origin: Arc<OnceLock<String>>,
    /// The registry replicas, asked about instances that failed a call.
    registry: Arc<OnceLock<Vec<RegistryClient>>>,
    /// (service, address) of the instances being asked about.
    asking: Arc<Mutex<HashSet<(String, String)>>>,
    timeout: Duration,
    max_body: usize,
}

impl Outbound {
    pub fn new(
        cache: Arc<InstanceCache>,
        local: Arc<LocalServices>,
        timeout: Duration,
        max_body: usize,
    ) -> Self {
        Outbound {
            http: protocol::http::http_client(),
            cache,
            local,
            origin: Arc::new(OnceLock::new()),
            registry: Arc::new(OnceLock::new()),
            asking: Arc::default(),
            timeout,
            max_body,
        }
    }

    /// The address the calling service is registered at.
    pub fn set_origin(&self, addr: &str) {
        let _ = self.origin.set(addr.to_owned());
    }

    /// The registry replicas to ask about an instance that failed a call.
    pub fn set_registry(&self, clients: Vec<RegistryClient>) {
        let _ = self.registry.set(clients);
    }

    /// Sends `call` to `service`: to this process's own instance of it when
    /// it runs one that is serving, else to a random instance from the
    /// cache. Either way within the call timeout, with the same answers and
    /// failures.
    pub async fn call(&self, service: &str, call: Call) -> Result<Answer, CallFailure> {
        let from = self.origin.get().map_or("", String::as_str);
        // A service's call to its own name is never taken in process by
        // itself: what it gets is what it got before there were local
        // calls, the instances the registry announced.
        let local = self
            .local
            .find(service)
            .filter(|app| app.local_addr() != from);
        let deadline = Instant::now() + self.timeout;
        match local {
            Some(app) => timeout_at(deadline, local::call(app, call, from, self.max_body))
                .await
                .unwrap_or(Err(CallFailure::Timeout)),
            None => self.call_remote(service, &call, deadline).await,
        }
    }

    /// Sends `call` to a random instance of `service`. A refused connection
    /// means the request was never sent, so it is safe to try another
    /// instance whatever the method, and every known one is tried before
    /// the call fails (by `deadline`); anything else is final.
    async fn call_remote(
        &self,
        service: &str,
        call: &Call,
        deadline: Instant,
    ) -> Result<Answer, CallFailure> {
        if !self.cache.knows(service) {
            // Before the registration answer, what the cache lacks may be
            // on its way; after it, this returns at once.
            let _ = timeout_at(deadline, self.cache.filled()).await;
        }
        let mut tried: Vec<String> = Vec::new();
        let mut last_error = String::new();
        while let Some(addr) = self.cache.pick_excluding(service, &tried) {
            let Ok(sent) = timeout_at(deadline, self.send(&addr, call)).await else {
                self.ask_about(service, &addr);
                return Err(CallFailure::Timeout);
            };
            match sent {
                Ok(answer) => return Ok(answer),
                Err(SendError::Refused(e)) => {
                    // Nothing listens there: forget the instance until the
                    // registry announces it again.
                    tracing::warn!(service, %addr, error = %e, "instance refused the connection; dropped from the cache");
                    self.cache
                        .remove(&ServiceRecord::new(service, addr.clone(), Vec::new()));
                    last_error = format!("{addr}: {e}");
                    tried.push(addr);
                }
                Err(SendError::Broken(e)) => {
                    self.ask_about(service, &addr);
                    return Err(CallFailure::Unreachable(format!("{addr}: {e}")));
                }
            }
        }
        if tried.is_empty() {
            Err(CallFailure::NoInstance)
        } else {
            Err(CallFailure::Unreachable(last_error))
        }
    }

    /// Asks the registry, in the background, whether it still lists the
    /// instance of `service` at `addr` that just failed a call, and forgets
    /// the instance if not. One question per instance at a time; no answer
    /// (no replica reachable) keeps it.
    fn ask_about(&self, service: &str, addr: &str) {
        let Some(replicas) = self.registry.get() else {
            return;
        };
        let key = (service.to_owned(), addr.to_owned());
        if !lock(&self.asking).insert(key.clone()) {
            return;
        }
        let replicas = replicas.clone();
        let (cache, asking) = (self.cache.clone(), self.asking.clone());
        tokio::spawn(async move {
            let (service, addr) = &key;
            for replica in &replicas {
                // A replica that cannot answer, or answers from a copy that
                // may lack the instance: the next one may know.
                let listed = match replica.addresses(service).await {
                    Ok(listed) => listed,
                    Err(e) => {
                        tracing::debug!(service, %addr, registry = replica.base_url(), error = %e, "cannot tell whether the registry lists the instance");
                        continue;
                    }
                };
                if !listed.contains(addr) {
                    tracing::warn!(service, %addr, registry = replica.base_url(), "instance failed a call and the registry no longer lists it; dropped from the cache");
                    cache.remove(&ServiceRecord::new(service, addr.clone(), Vec::new()));
                }
                break;
            }
            lock(&asking).remove(&key);
        });
    }

    async fn send(&self, addr: &str, call: &Call) -> Result<Answer, SendError> {
        let uri = format!("http://{addr}{}", call.path);
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(&uri)
            .body(Full::new(call.body.clone()))
            .map_err(|e| SendError::Broken(format!("cannot build request for {uri}: {e}")))?;
        let headers = request.headers_mut();
        // Cloned: a refused connection sends the call again elsewhere.
        *headers = end_to_end(call.headers.clone());
        // The client sets Host and Content-Length for the message it sends.
        headers.remove(HOST);
        headers.remove(CONTENT_LENGTH);

        let response = self.http.request(request).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, self.max_body)
            .collect()
            .await
            .map_err(|e| SendError::Broken(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: end_to_end(parts.headers),
            body,
        })
    }
}

/// `headers` without the hop-by-hop ones, including those that `Connection`
/// names. Removed in place: every hop does this to a map it owns, and a
/// copy of the rest cost an allocation or two per header.
pub fn end_to_end(mut headers: HeaderMap) -> HeaderMap {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    for name in named {
        headers.remove(name);
    }
    headers
}

/// The header that names the calling service on every call the host sends
/// for a plugin; the log service writes it as the line's source.
pub const SOURCE_HEADER: &str = "x-log-source";

/// Names `service` as the caller, replacing whatever the plugin put there.
pub fn set_source(headers: &mut HeaderMap, service: &str) {
    headers.remove(SOURCE_HEADER);
    if let Ok(source) = HeaderValue::from_str(service) {
        headers.insert(SOURCE_HEADER, source);
    }
}

/// The most headers a plugin's response or outgoing request may carry:
/// hyper's own limit for the messages it reads, so that whatever we send
/// can be read by another Sparrow host.
pub const MAX_HEADERS: usize = 100;

/// A plugin gave more than [`MAX_HEADERS`] headers.
#[derive(Debug, thiserror::Error)]
#[error("more than {MAX_HEADERS} headers")]
pub struct TooManyHeaders;

/// Converts `name: value` pairs (the plugin's view) to a header map, skipping
/// pairs that are not valid HTTP.
pub fn header_map<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<HeaderMap, TooManyHeaders> {
    let mut map = HeaderMap::new();
    for (n, (name, value)) in pairs.into_iter().enumerate() {
        if n >= MAX_HEADERS {
            return Err(TooManyHeaders);
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let headers = header_map([
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-secret", "1"),
            ("x-kept", "2"),
        ])
        .unwrap();
        let kept = end_to_end(headers);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept["x-kept"], "2");
    }

    #[test]
    fn any_number_of_headers_is_an_error_or_a_map_never_a_panic() {
        let many: Vec<(String, String)> = (0..40_000)
            .map(|i| (format!("x-h{i}"), "v".to_owned()))
            .collect();
        let pairs = || many.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        assert!(header_map(pairs()).is_err());
        assert_eq!(
            header_map(pairs().take(MAX_HEADERS)).unwrap().len(),
            MAX_HEADERS
        );
        let repeated = vec![("x-same", "v"); 40_000];
        assert!(header_map(repeated).is_err());
        // A map with many values of one name, as hyper may hand us.
        let mut big = HeaderMap::new();
        for _ in 0..40_000 {
            big.append("x-same", HeaderValue::from_static("v"));
        }
        assert_eq!(end_to_end(big).len(), 40_000);
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            /// Any headers a plugin gives become a map or a clear error,
            /// and no hop-by-hop header, nor one `Connection` names,
            /// crosses a hop.
            #[test]
            fn header_conversion_never_panics_and_drops_hop_by_hop(
                pairs in proptest::collection::vec(
                    ("connection|keep-alive|te|upgrade|x-[a-z]{1,3}|\\PC{0,6}", "\\PC{0,12}"),
                    0..150,
                ),
            ) {
                let given = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()));
                match header_map(given) {
                    Ok(map) => {
                        prop_assert!(pairs.len() <= MAX_HEADERS);
                        let kept = end_to_end(map.clone());
                        for hop in HOP_BY_HOP {
                            prop_assert!(!kept.contains_key(hop));
                        }
                        for named in map.get_all(CONNECTION).iter().filter_map(|v| v.to_str().ok()) {
                            for name in named.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                                prop_assert!(!kept.contains_key(name.to_ascii_lowercase().as_str()));
                            }
                        }
                    }
                    Err(_) => prop_assert!(pairs.len() > MAX_HEADERS),
                }
            }
        }
    }
}

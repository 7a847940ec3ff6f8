//! The gateway: `/{service}/rest...` goes to an instance of `{service}` with
//! the same method, the whole path and query, headers and body; the answer
//! comes back as it is. The path keeps its `/{service}` prefix (the seed's
//! services expect it), and `X-Forwarded-Prefix: /{service}` says what that
//! prefix is, so that a service can route on the rest of the path whether
//! called directly or through the gateway (`Request::route` in the SDK).
//!
//! What a reverse proxy owes its users happens here: `Connection` and the
//! headers it names are dropped before the forwarding headers are set (so
//! that a client cannot have them stripped), `X-Forwarded-For`,
//! `X-Forwarded-Host`, `X-Forwarded-Proto`, `X-Forwarded-Prefix` and `Via`
//! are set (a client's own `X-Forwarded-Host`, `-Proto` and `-Prefix` are
//! replaced; `X-Forwarded-For` and `Via` are extended), a request that
//! already passed through this gateway (or through too many proxies) is
//! answered 508 instead of looping, and each failure gets the status that
//! says what happened. Sending is the host's: instance choice, retries,
//! timeouts, and dropping the other hop-by-hop headers (`Keep-Alive`, `TE`,
//! `Upgrade` ...), as it does for every call.

// Lean: no standard library, so its component imports no WASI interface
// (docs/plugins.md, "Lean Rust plugins"). Tests run natively, with it.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use sparrow_plugin::services::call_service;
use sparrow_plugin::{CallError, Description, Guest, Header, Request, Response};

/// Proxies a request may pass before it is taken for a loop.
const MAX_HOPS: usize = 10;

struct Gateway;

impl Guest for Gateway {
    fn describe() -> Description {
        Description {
            name: "gateway".into(),
            // The gateway forwards to whatever service a path names.
            requires: alloc::vec!["*".into()],
        }
    }

    fn handle_request(request: Request) -> Response {
        let Some(service) = target_service(&request) else {
            return Response::text(404, "no service named: use /{service}/...");
        };
        let service = service.to_owned();
        let me = request.header("x-sparrow-local-addr").unwrap_or("gateway");
        let hops = via_entries(&request);
        if hops.iter().any(|hop| received_by(hop) == me) {
            return Response::text(
                508,
                format!("loop detected: this request already passed through gateway {me}"),
            );
        }
        if hops.len() >= MAX_HOPS {
            return Response::text(
                508,
                format!("loop suspected: this request passed {} proxies", hops.len()),
            );
        }
        let forwarded = Request {
            headers: forwarding_headers(&request, &service, me),
            ..request
        };
        match call_service(&service, &forwarded) {
            Ok(response) => response,
            Err(CallError::NoInstance) => {
                Response::text(503, format!("no instance of service '{service}'"))
            }
            Err(CallError::NotAllowed) => Response::text(
                503,
                format!("service '{service}' is not reachable from the gateway"),
            ),
            Err(CallError::Unreachable(why)) => {
                Response::text(502, format!("service '{service}' failed: {why}"))
            }
            Err(CallError::Timeout) => {
                Response::text(504, format!("service '{service}' did not answer in time"))
            }
            Err(CallError::InvalidRequest(why)) => {
                Response::text(400, format!("cannot forward to '{service}': {why}"))
            }
        }
    }
}

/// The first path segment: `/visit/a?b=1` -> `visit`.
fn target_service(request: &Request) -> Option<&str> {
    let first = request
        .path_only()
        .trim_start_matches('/')
        .split('/')
        .next()?;
    (!first.is_empty()).then_some(first)
}

/// Every `Via` entry of the request, in order.
fn via_entries(request: &Request) -> Vec<&str> {
    request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("via"))
        .flat_map(|h| h.value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect()
}

/// `1.1 127.0.0.1:20001 (sparrow)` -> `127.0.0.1:20001`.
fn received_by(via_entry: &str) -> &str {
    via_entry.split_whitespace().nth(1).unwrap_or_default()
}

/// The request's headers as they should leave the gateway for `service`.
fn forwarding_headers(request: &Request, service: &str, me: &str) -> Vec<Header> {
    let named_by_connection: Vec<String> = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let client_ip = request
        .header("x-sparrow-client-addr")
        .and_then(|addr| addr.rsplit_once(':'))
        .map(|(ip, _port)| ip.trim_start_matches('[').trim_end_matches(']').to_owned());
    let forwarded_for = request
        .header("x-forwarded-for")
        .map(str::to_owned)
        .into_iter()
        .chain(client_ip)
        .collect::<Vec<_>>()
        .join(", ");
    let host = request.header("host").map(str::to_owned);
    let via = via_entries(request)
        .into_iter()
        .map(str::to_owned)
        .chain([format!("1.1 {me} (sparrow)")])
        .collect::<Vec<_>>()
        .join(", ");

    let replaced = [
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-prefix",
        "via",
        "host",
    ];
    let mut headers: Vec<Header> = request
        .headers
        .iter()
        .filter(|h| {
            let name = h.name.to_ascii_lowercase();
            name != "connection"
                && !named_by_connection.contains(&name)
                && !replaced.contains(&name.as_str())
                && !name.starts_with("x-sparrow-")
        })
        .cloned()
        .collect();
    let header = |name: &str, value: String| Header {
        name: name.into(),
        value,
    };
    if !forwarded_for.is_empty() {
        headers.push(header("x-forwarded-for", forwarded_for));
    }
    if let Some(host) = host {
        headers.push(header("x-forwarded-host", host));
    }
    headers.push(header("x-forwarded-proto", "http".into()));
    // The path as forwarded starts with it: `/{service}`, as in the path.
    headers.push(header("x-forwarded-prefix", format!("/{service}")));
    headers.push(header("via", via));
    headers
}

sparrow_plugin::export!(Gateway);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn request(path: String, headers: Vec<(String, String)>) -> Request {
        Request {
            method: "GET".into(),
            path,
            headers: headers
                .into_iter()
                .map(|(name, value)| Header { name, value })
                .collect(),
            body: Vec::new(),
        }
    }

    fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(
            (
                "via|Via|connection|x-forwarded-for|x-forwarded-prefix|x-sparrow-client-addr|host|x-[a-z]{1,4}",
                "\\PC{0,24}",
            ),
            0..12,
        )
    }

    proptest! {
        /// The service is the first path segment: never empty, never with a
        /// slash, and what the path starts with.
        #[test]
        fn the_target_is_the_first_segment(path in "/?\\PC{0,30}") {
            let req = request(path.clone(), vec![]);
            if let Some(service) = target_service(&req) {
                prop_assert!(!service.is_empty() && !service.contains('/'));
                prop_assert!(path.trim_start_matches('/').starts_with(service));
            }
        }

        /// Whatever the client sent, a request this gateway forwarded is
        /// recognised when it comes back (the loop guard), and what leaves
        /// carries one prefix, no `Connection`, nothing it names, and no
        /// `x-sparrow-*` header.
        #[test]
        fn forwarding_is_recognised_and_clean(
            headers in headers(),
            service in "[a-z]{1,8}",
            port in 1u16..,
        ) {
            let me = format!("127.0.0.1:{port}");
            let req = request(format!("/{service}/x"), headers);
            let out = forwarding_headers(&req, &service, &me);
            let back = request(format!("/{service}/x"), out.iter().map(|h| (h.name.clone(), h.value.clone())).collect());
            prop_assert!(via_entries(&back).iter().any(|hop| received_by(hop) == me));
            let prefixes: Vec<&Header> = out.iter().filter(|h| h.name == "x-forwarded-prefix").collect();
            prop_assert_eq!(prefixes.len(), 1);
            prop_assert_eq!(&prefixes[0].value, &format!("/{service}"));
            let named: Vec<String> = req.headers.iter()
                .filter(|h| h.name.eq_ignore_ascii_case("connection"))
                .flat_map(|h| h.value.split(',').map(|n| n.trim().to_ascii_lowercase()).collect::<Vec<_>>())
                .filter(|n| !n.is_empty())
                .collect();
            for h in &out {
                let name = h.name.to_ascii_lowercase();
                prop_assert!(name != "connection" && !name.starts_with("x-sparrow-"));
                let set_here = ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-prefix", "via"];
                prop_assert!(set_here.contains(&name.as_str()) || !named.contains(&name), "{name} was named by Connection");
            }
        }
    }
}

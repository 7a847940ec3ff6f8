//! The gateway: `/{service}/rest...` goes to an instance of `{service}` with
//! the same method, the whole path and query, headers and body; the answer
//! comes back as it is. The path keeps its `/{service}` prefix (the seed's
//! services expect it), and `X-Forwarded-Prefix: /{service}` says what that
//! prefix is, so that a service can route on the rest of the path whether
//! called directly or through the gateway (`Request::route` in the SDK).
//!
//! What a reverse proxy owes its users happens here: `Connection` and the
//! headers it names are dropped before anything else reads the request (so
//! that a client cannot have the forwarding headers stripped, nor keep its
//! own by naming them: they are as if never sent), `X-Forwarded-For`,
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
        if let Some(refusal) = loop_refusal(&request, me) {
            return refusal;
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
            // The host's hop limit: a loop through services, as a `Via`
            // loop is one through proxies (the WIT names the prefix).
            Err(CallError::InvalidRequest(why)) if why.starts_with("loop detected") => {
                Response::text(508, format!("cannot forward to '{service}': {why}"))
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

/// The 508 for a request that already passed through this gateway (`me`)
/// or through too many proxies.
fn loop_refusal(request: &Request, me: &str) -> Option<Response> {
    let hops = via_entries(&end_to_end(request));
    if hops.iter().any(|hop| received_by(hop) == me) {
        return Some(Response::text(
            508,
            format!("loop detected: this request already passed through gateway {me}"),
        ));
    }
    if hops.len() >= MAX_HOPS {
        return Some(Response::text(
            508,
            format!("loop suspected: this request passed {} proxies", hops.len()),
        ));
    }
    None
}

/// The client's headers meant past this hop, which the gateway reads and
/// forwards: all but `Connection` and the headers it names (RFC 9110,
/// 7.6.1), which are as if never sent, so that a client cannot keep its own
/// `X-Forwarded-For` or `Via` by naming them. The host's own `x-sparrow-*`
/// headers are not among them (never forwarded), and `Connection` cannot
/// name them away: the gateway reads them from the request.
fn end_to_end(request: &Request) -> Vec<&Header> {
    let named_by_connection: Vec<String> = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    request
        .headers
        .iter()
        .filter(|h| {
            let name = h.name.to_ascii_lowercase();
            name != "connection"
                && !named_by_connection.contains(&name)
                && !name.starts_with("x-sparrow-")
        })
        .collect()
}

/// The value of the first of `headers` called `name` (any case).
fn value<'a>(headers: &[&'a Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Every `Via` entry among `headers`, in order.
fn via_entries<'a>(headers: &[&'a Header]) -> Vec<&'a str> {
    headers
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
    let theirs = end_to_end(request);
    let client_ip = request
        .header("x-sparrow-client-addr")
        .and_then(|addr| addr.rsplit_once(':'))
        .map(|(ip, _port)| ip.trim_start_matches('[').trim_end_matches(']').to_owned());
    let forwarded_for = value(&theirs, "x-forwarded-for")
        .map(str::to_owned)
        .into_iter()
        .chain(client_ip)
        .collect::<Vec<_>>()
        .join(", ");
    let host = value(&theirs, "host").map(str::to_owned);
    let via = via_entries(&theirs)
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
    let mut headers: Vec<Header> = theirs
        .into_iter()
        .filter(|h| !replaced.contains(&h.name.to_ascii_lowercase().as_str()))
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

    const ME: &str = "127.0.0.1:20001";

    /// `/echo/headers` as the host hands it to the gateway at `ME`, from a
    /// client at 127.0.0.1 that sent `headers`.
    fn from_client(headers: &[(&str, &str)]) -> Request {
        let host = [
            ("x-sparrow-client-addr", "127.0.0.1:50000"),
            ("x-sparrow-local-addr", ME),
        ];
        request(
            "/echo/headers".into(),
            headers
                .iter()
                .chain(&host)
                .map(|&(name, value)| (name.into(), value.into()))
                .collect(),
        )
    }

    /// The values of `name` among the headers that leave for `echo`.
    fn forwarded(request: &Request, name: &str) -> Vec<String> {
        forwarding_headers(request, "echo", ME)
            .into_iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    }

    fn own_via() -> String {
        format!("1.1 {ME} (sparrow)")
    }

    #[test]
    fn an_x_forwarded_for_named_by_connection_is_dropped_not_extended() {
        let req = from_client(&[
            ("connection", "X-Forwarded-For , x-foo"),
            ("X-Forwarded-For", "10.9.9.9"),
            ("x-foo", "1"),
        ]);
        assert_eq!(forwarded(&req, "x-forwarded-for"), ["127.0.0.1"]);
        assert!(forwarded(&req, "x-foo").is_empty());
    }

    #[test]
    fn a_via_named_by_connection_is_dropped_not_extended() {
        let req = from_client(&[("connection", "via"), ("via", "1.0 proxyA")]);
        assert_eq!(forwarded(&req, "via"), [own_via()]);
    }

    #[test]
    fn a_via_named_by_connection_is_no_hop_for_the_loop_guard() {
        let own = own_via();
        let many = (0..MAX_HOPS)
            .map(|n| format!("1.1 proxy{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        for via in [own.as_str(), many.as_str()] {
            // Not named by Connection, either is refused ...
            let req = from_client(&[("via", via)]);
            assert_eq!(loop_refusal(&req, ME).map(|r| r.status), Some(508));
            // ... named, it is as if never sent: forwarded, with this
            // gateway's entry alone.
            let req = from_client(&[("connection", "keep-alive, Via"), ("via", via)]);
            assert_eq!(loop_refusal(&req, ME).map(|r| r.status), None, "{via}");
            assert_eq!(forwarded(&req, "via"), [own.as_str()]);
        }
    }

    #[test]
    fn connection_cannot_name_the_hosts_own_headers_away() {
        // The loop guard and X-Forwarded-For read the host's headers, which
        // are not the client's to drop.
        let req = from_client(&[
            ("connection", "x-sparrow-local-addr, x-sparrow-client-addr"),
            ("via", &own_via()),
        ]);
        assert_eq!(loop_refusal(&req, ME).map(|r| r.status), Some(508));
        let req = from_client(&[("connection", "x-sparrow-client-addr")]);
        assert_eq!(forwarded(&req, "x-forwarded-for"), ["127.0.0.1"]);
        assert_eq!(forwarded(&req, "via"), [own_via()]);
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

    /// A `Connection` value naming some of the headers `headers()` makes.
    fn connection() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            "via|Via|x-forwarded-for|X-Forwarded-For|host|x-sparrow-local-addr|x-sparrow-client-addr|keep-alive|x-[a-z]{1,4}",
            0..4,
        )
        .prop_map(|names| names.join(" , "))
    }

    proptest! {
        /// A header `Connection` names is as if the client never sent it:
        /// the same headers leave, and the loop guard decides the same.
        /// The host's own `x-sparrow-*` headers are not the client's: they
        /// stay.
        #[test]
        fn what_connection_names_is_as_if_never_sent(
            mut headers in headers(),
            connection in connection(),
            service in "[a-z]{1,8}",
            port in 1u16..,
        ) {
            let me = format!("127.0.0.1:{port}");
            headers.push(("connection".into(), connection));
            let req = request(format!("/{service}/x"), headers);
            let named: Vec<String> = req.headers.iter()
                .filter(|h| h.name.eq_ignore_ascii_case("connection"))
                .flat_map(|h| h.value.split(',').map(|n| n.trim().to_ascii_lowercase()).collect::<Vec<_>>())
                .collect();
            let unsent = request(
                format!("/{service}/x"),
                req.headers.iter()
                    .filter(|h| {
                        let name = h.name.to_ascii_lowercase();
                        name.starts_with("x-sparrow-") || (name != "connection" && !named.contains(&name))
                    })
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            );
            let pairs = |req: &Request| -> Vec<(String, String)> {
                forwarding_headers(req, &service, &me).into_iter().map(|h| (h.name, h.value)).collect()
            };
            prop_assert_eq!(pairs(&req), pairs(&unsent));
            let refusal = |req: &Request| loop_refusal(req, &me).map(|r| (r.status, r.body));
            prop_assert_eq!(refusal(&req), refusal(&unsent));
        }

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
            prop_assert!(via_entries(&end_to_end(&back)).iter().any(|hop| received_by(hop) == me));
            prop_assert_eq!(loop_refusal(&back, &me).map(|r| r.status), Some(508));
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

//! Where a request is in its chain of calls: W3C Trace Context
//! (`traceparent`, `tracestate`) and the count of hosts it went through
//! (`x-sparrow-hops`). A request that comes without a valid `traceparent`
//! starts a trace here; one that comes with it continues the caller's.
//! Either way the request gets a span id of its own in this host (a
//! [`Hop`]), and:
//!
//! - the plugin sees `traceparent` naming this hop as the parent, so a
//!   plugin that forwards headers (the gateway) passes on the right one;
//! - every call the plugin makes (`call-service`, `log-println`, a standard
//!   component's outgoing request) carries this hop's `traceparent` and the
//!   hop count plus one, whatever headers the plugin set: the host owns
//!   these headers as it owns the rest of `x-sparrow-*`. A call that would
//!   take the count past `--max-hops` is refused, so that services calling
//!   each other in a circle stop instead of running until their timeouts;
//! - the host's log lines about the request are inside a `request` span
//!   with a `trace_id` field, so grepping one id over every host's log shows
//!   the whole path of a request.

use http::{HeaderMap, HeaderValue};

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
/// How many hosts a chain of calls went through before this one.
pub const HOPS_HEADER: &str = "x-sparrow-hops";

/// The only version this host writes.
const VERSION: &str = "00";
/// `tracestate` beyond this is dropped rather than passed on (the
/// specification asks to pass on at least 512 characters).
const MAX_TRACESTATE: usize = 512;
/// The `sampled` flag; the other flags are not passed on (version 00).
const SAMPLED: u8 = 0x01;

/// The trace context of one request in this host.
#[derive(Clone, Debug)]
pub struct Hop {
    /// The caller's vendor entries, passed on unchanged.
    tracestate: Option<HeaderValue>,
    /// The hosts the request went through before this one (0: it came
    /// from outside).
    hops: u32,
    /// The `traceparent` that names this hop (its own span id, new here) as
    /// the parent, written once: the plugin sees it and every call the
    /// request makes carries it.
    traceparent: HeaderValue,
}

impl Hop {
    /// The hop of a request with `headers`: it continues the caller's trace
    /// when `traceparent` is valid, else starts a new (sampled) trace.
    pub fn start(headers: &HeaderMap) -> Hop {
        let span_id = nonzero_random_u64();
        // Repeated, the highest count: a loop is never hidden by a stray
        // lower value.
        let hops = headers
            .get_all(HOPS_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok()?.trim().parse().ok())
            .max()
            .unwrap_or(0);
        let (trace_id, flags, tracestate) =
            match single(headers, TRACEPARENT).and_then(parse_traceparent) {
                Some(parent) => (parent.trace_id, parent.flags & SAMPLED, tracestate(headers)),
                None => (nonzero_random_u128(), SAMPLED, None),
            };
        Hop {
            tracestate,
            hops,
            traceparent: traceparent(trace_id, span_id, flags),
        }
    }

    /// The hop count a call made from this hop carries.
    pub fn next_hops(&self) -> u32 {
        self.hops.saturating_add(1)
    }

    /// The trace id, as 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        self.traceparent().get(3..35).unwrap_or_default()
    }

    /// The `traceparent` that names this hop as the parent.
    pub fn traceparent(&self) -> &str {
        // Written from hex digits and dashes only.
        self.traceparent.to_str().unwrap_or_default()
    }

    /// The span that the host's log lines about this request go in.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!("request", trace_id = %self.trace_id())
    }

    /// The trace headers the plugin sees, in place of the client's.
    pub fn plugin_headers(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        let state = self
            .tracestate
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(|v| (TRACESTATE, v.to_owned()));
        std::iter::once((TRACEPARENT, self.traceparent().to_owned())).chain(state)
    }

    /// Makes an outgoing call a child of this hop: its `traceparent` is
    /// this hop's and its hop count one more, whatever the plugin set;
    /// `tracestate` is passed on.
    pub fn attach(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT, self.traceparent.clone());
        if let Some(state) = &self.tracestate {
            headers.insert(TRACESTATE, state.clone());
        }
        headers.insert(HOPS_HEADER, HeaderValue::from(self.next_hops()));
    }
}

/// `VERSION-TRACEID-PARENTID-FLAGS` in lowercase hex. Written by hand, once
/// per request: `format!` of the three numbers, for the plugin's headers and
/// again for each call, was 1-2% of a `perf` profile of three services in
/// one process (too little to show in its requests/s).
fn traceparent(trace_id: u128, span_id: u64, flags: u8) -> HeaderValue {
    let mut text = [b'-'; 55];
    text[..2].copy_from_slice(VERSION.as_bytes());
    hex_into(&mut text[3..35], trace_id);
    hex_into(&mut text[36..52], u128::from(span_id));
    hex_into(&mut text[53..55], u128::from(flags));
    HeaderValue::from_bytes(&text).expect("hex digits and dashes make a header value")
}

/// Fills `out` with the lowest `out.len()` hex digits of `value`.
fn hex_into(out: &mut [u8], mut value: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for digit in out.iter_mut().rev() {
        *digit = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// Whether `name` (lowercase, as `http` keeps it) is a trace header, which
/// the host sets itself.
pub fn is_trace_header(name: &str) -> bool {
    name == TRACEPARENT || name == TRACESTATE
}

/// What a valid `traceparent` says.
#[derive(Debug, PartialEq, Eq)]
struct Parent {
    trace_id: u128,
    flags: u8,
}

/// Parses `traceparent` as the specification says a receiver must: lowercase
/// hex fields of the right lengths, no all-zero id, version `ff` invalid, and
/// a later version read as far as version 00 goes.
fn parse_traceparent(value: &HeaderValue) -> Option<Parent> {
    let text = value.to_str().ok()?.trim_matches([' ', '\t']);
    let bytes = text.as_bytes();
    if bytes.len() < 55 {
        return None;
    }
    let version = hex_field(&text[0..2])? as u8;
    let exact = version == 0;
    if version == 0xff
        || (exact && bytes.len() != 55)
        || (!exact && bytes.len() > 55 && bytes[55] != b'-')
    {
        return None;
    }
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let trace_id = hex_field(&text[3..35])?;
    let parent_id = hex_field(&text[36..52])? as u64;
    let flags = hex_field(&text[53..55])? as u8;
    (trace_id != 0 && parent_id != 0).then_some(Parent { trace_id, flags })
}

/// A field of lowercase hex digits (at most 32).
fn hex_field(text: &str) -> Option<u128> {
    if !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u128::from_str_radix(text, 16).ok()
}

/// The one value of header `name`; none when it is missing or repeated.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// Every `tracestate` value joined, if it is short enough to pass on.
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let parts: Vec<&str> = headers
        .get_all(TRACESTATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let joined = parts.join(",");
    if joined.is_empty() || joined.len() > MAX_TRACESTATE {
        return None;
    }
    HeaderValue::try_from(joined).ok()
}

fn nonzero_random_u64() -> u64 {
    loop {
        let id = rand::random::<u64>();
        if id != 0 {
            return id;
        }
    }
}

fn nonzero_random_u128() -> u128 {
    loop {
        let id = rand::random::<u128>();
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn continues_a_valid_trace_with_a_span_of_its_own() {
        let hop = Hop::start(&headers(&[(TRACEPARENT, VALID), (TRACESTATE, "a=1")]));
        assert_eq!(
            hop.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let child = hop.traceparent().to_owned();
        assert!(
            child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{child}"
        );
        assert!(child.ends_with("-01"), "{child}");
        assert_ne!(
            &child[36..52],
            "00f067aa0ba902b7",
            "the hop needs its own id"
        );
        let span_id = u64::from_str_radix(&child[36..52], 16).unwrap();
        assert_ne!(span_id, 0);
        assert!(parse_traceparent(&HeaderValue::from_str(&child).unwrap()).is_some());

        let mut outgoing = headers(&[(TRACEPARENT, VALID), ("x-other", "1")]);
        hop.attach(&mut outgoing);
        assert_eq!(outgoing[TRACEPARENT], child.as_str());
        assert_eq!(outgoing[TRACESTATE], "a=1");
        assert_eq!(outgoing.get_all(TRACEPARENT).iter().count(), 1);
    }

    #[test]
    fn starts_a_trace_when_the_header_is_missing_or_invalid() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let hop = Hop::start(&headers(&[(TRACEPARENT, bad), (TRACESTATE, "a=1")]));
            assert_ne!(
                hop.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "{bad:?} was accepted"
            );
            assert!(hop.tracestate.is_none(), "{bad:?}: tracestate kept");
            assert_eq!(hop.traceparent().len(), 55);
        }
        let two = headers(&[(TRACEPARENT, VALID), (TRACEPARENT, VALID)]);
        assert_ne!(Hop::start(&two).trace_id().to_string(), &VALID[3..35]);
    }

    #[test]
    fn a_call_carries_one_hop_more_than_its_request() {
        let count = |pairs: &[(&str, &str)]| {
            let mut outgoing = headers(&[(HOPS_HEADER, "999")]);
            Hop::start(&headers(pairs)).attach(&mut outgoing);
            let values: Vec<_> = outgoing.get_all(HOPS_HEADER).iter().collect();
            assert_eq!(values.len(), 1, "the plugin's own count is replaced");
            values[0].to_str().unwrap().to_owned()
        };
        assert_eq!(count(&[]), "1");
        assert_eq!(count(&[(HOPS_HEADER, "3")]), "4");
        assert_eq!(count(&[(HOPS_HEADER, " 7 ")]), "8");
        assert_eq!(count(&[(HOPS_HEADER, "2"), (HOPS_HEADER, "5")]), "6");
        assert_eq!(count(&[(HOPS_HEADER, "many")]), "1");
        assert_eq!(count(&[(HOPS_HEADER, "4294967295")]), "4294967295");
    }

    #[test]
    fn reads_a_later_version_as_far_as_version_00_goes() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-says";
        let hop = Hop::start(&headers(&[(TRACEPARENT, later)]));
        assert_eq!(hop.trace_id().to_string(), &VALID[3..35]);
        assert!(hop.traceparent().starts_with("00-"));
    }

    #[test]
    fn new_traces_differ() {
        let a = Hop::start(&HeaderMap::new());
        let b = Hop::start(&HeaderMap::new());
        assert_ne!(a.trace_id(), b.trace_id());
    }
}

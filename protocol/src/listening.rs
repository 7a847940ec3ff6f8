//! The line every Sparrow binary logs once it listens, `listening on ADDR`,
//! and how tools (the tests, the bench) read the address back: with
//! `--addr 127.0.0.1:0` the log is the only place the chosen port shows.
//! A host that serves its metrics on an address of their own also logs
//! `metrics on ADDR`, worded so that reading the first line never finds it.

use std::net::SocketAddr;

const PREFIX: &str = "listening on ";
const METRICS_PREFIX: &str = "metrics on ";

/// The log message announcing `addr`.
pub fn message(addr: SocketAddr) -> String {
    format!("{PREFIX}{addr}")
}

/// The log message announcing the metrics address `addr`.
pub fn metrics_message(addr: SocketAddr) -> String {
    format!("{METRICS_PREFIX}{addr}")
}

/// The address announced in `log`, which may hold other text around the
/// message (timestamps, fields, other lines).
pub fn parse(log: &str) -> Option<SocketAddr> {
    parse_after(log, PREFIX)
}

/// The metrics address announced in `log`.
pub fn parse_metrics(log: &str) -> Option<SocketAddr> {
    parse_after(log, METRICS_PREFIX)
}

fn parse_after(log: &str, prefix: &str) -> Option<SocketAddr> {
    let at = log.find(prefix)? + prefix.len();
    let rest = &log[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_writes() {
        let addr: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let line = format!("2026-01-01T00:00:00Z INFO x: {} service=log", message(addr));
        assert_eq!(parse(&line), Some(addr));
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(parse(&message(v6)), Some(v6));
        assert_eq!(parse("nothing here"), None);
        let metrics: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        let both = format!("{}\n{}", metrics_message(metrics), message(addr));
        assert_eq!(parse(&both), Some(addr));
        assert_eq!(parse_metrics(&both), Some(metrics));
    }
}

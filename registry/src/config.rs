//! The registry's tunables, parsed from the command line (durations are
//! written like `500ms` or `30s`). The heartbeat defaults are the
//! original's.

use std::time::Duration;

use clap::{Args, Parser};
use protocol::accept::ServeSettings;
use protocol::duration::{self, DAY, HOUR, MILLISECOND, MINUTE};

#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Time between two heartbeat sweeps over every registered instance;
    /// 100ms to 1d
    #[arg(long, default_value = "30s", value_parser = duration::within(100 * MILLISECOND, DAY))]
    pub heartbeat_interval: Duration,

    /// Failed `GET /heart-beat` attempts in a row after which an instance is
    /// evicted and its dependents are notified; 1 to 100
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub heartbeat_attempts: u32,

    /// Pause between two heartbeat attempts on the same instance; 10ms to 1m
    #[arg(long, default_value = "1s", value_parser = duration::within(10 * MILLISECOND, MINUTE))]
    pub heartbeat_retry_delay: Duration,

    /// Evictions are withheld while more than this share of the table's
    /// instances, in percent, failed their latest heartbeat: so many at
    /// once is more likely this registry's own network than the instances.
    /// 100 turns the guard off; 1 to 100
    #[arg(long, value_name = "PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub eviction_guard: u32,

    /// The guard holds only in a table of at least this many instances
    /// (in a small one, most failing at once is a small failure); 1 to
    /// 1000000
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub eviction_guard_min: u32,

    /// Heartbeat requests in flight at once, at most; 1 to 10000
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub heartbeat_concurrency: u32,

    /// Deadline of every request the registry sends: each notification
    /// attempt and each heartbeat attempt; 10ms to 1m
    #[arg(long, default_value = "2s", value_parser = duration::within(10 * MILLISECOND, MINUTE))]
    pub notify_timeout: Duration,

    /// Notifications queued for one dependent before its queue is coalesced
    /// to the latest change of each instance (a slow or dead dependent
    /// cannot make the registry grow without bound); 1 to 1000000
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub notify_queue: u32,

    /// Instances the table holds at most: registering one more answers 507
    /// (registering a known instance again still works). Whatever this
    /// says, the records take 15 MiB at most, so that every registration
    /// answer fits in the 16 MiB a host reads; 1 to 1000000
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_instances: u32,

    /// Keep the table in etcd (comma-separated `http://HOST:PORT` of its
    /// members), shared by every registry given the same etcd and prefix;
    /// without it the table lives in this process's memory
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',', value_parser = etcd_url)]
    pub etcd: Vec<String>,

    /// The prefix of every key the registry keeps in etcd
    #[arg(long, default_value = "/sparrow", value_parser = etcd_prefix)]
    pub etcd_prefix: String,

    /// Deadline of every etcd request: a write etcd does not acknowledge
    /// within it answers 503; 100ms to 1m
    #[arg(long, default_value = "2s", value_parser = duration::within(100 * MILLISECOND, MINUTE))]
    pub etcd_timeout: Duration,

    /// The most operations etcd takes in one transaction: its own
    /// `--max-txn-ops`. A replica's registrations share transactions within
    /// it; 3 to 100000
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(3..=100_000))]
    pub etcd_max_txn_ops: u32,

    /// The largest request etcd takes, in bytes: its own
    /// `--max-request-bytes`. A replica's registrations share transactions
    /// within it less 64 KiB; 131072 to 1073741824
    #[arg(long, default_value_t = 1_572_864, value_parser = clap::value_parser!(u32).range(131_072..=1 << 30))]
    pub etcd_max_request_bytes: u32,

    /// Lease of the replica that runs the heartbeat sweeps (with `--etcd`,
    /// whole seconds, 2s to 1h): when it dies, another replica takes over
    /// within about 1.25 × this
    #[arg(long, default_value = "3s", value_parser = leader_ttl)]
    pub leader_ttl: Duration,

    /// Shared secret: registrations, deregistrations and notifications must
    /// carry `Authorization: Bearer TOKEN` (401 otherwise); visible ASCII,
    /// not empty. Without it the protocol is open, as in the original
    #[arg(long, env = "SPARROW_TOKEN", hide_env_values = true, value_parser = protocol::token::parse)]
    pub token: Option<String>,

    #[command(flatten)]
    pub serve: ServeSettings,
}

/// The registry's flags on a command line of their own: what the defaults
/// and the tests parse.
#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// How registrations share etcd transactions.
    pub(crate) fn batching(&self) -> crate::store::etcd::Batching {
        crate::store::etcd::Batching {
            room: self.serve.max_connections as usize,
            max_ops: self.etcd_max_txn_ops as usize,
            max_request_bytes: self.etcd_max_request_bytes as usize,
        }
    }

    /// What the table may hold.
    pub(crate) fn limits(&self) -> crate::store::Limits {
        crate::store::Limits {
            instances: self.max_instances as usize,
            bytes: crate::store::TABLE_BUDGET,
        }
    }
}

impl Default for Config {
    /// The defaults written on the flags above, so they live in one place.
    fn default() -> Self {
        Flags::parse_from(["registry"]).config
    }
}

fn etcd_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    match text.strip_prefix("http://") {
        Some(rest)
            if rest
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
                && !rest.contains('/') =>
        {
            Ok(text.to_owned())
        }
        _ => Err(format!("{text:?} is not http://HOST:PORT")),
    }
}

fn etcd_prefix(text: &str) -> Result<String, String> {
    let trimmed = text.trim_end_matches('/');
    if !trimmed.starts_with('/') || trimmed.chars().any(char::is_whitespace) {
        return Err(format!("{text:?} is not a key prefix like /sparrow"));
    }
    Ok(trimmed.to_owned())
}

fn leader_ttl(text: &str) -> Result<Duration, String> {
    // etcd raises shorter leases to its own minimum (about 2 s by default)
    // without saying so: refuse them, so that the bound stated is the real
    // one.
    let ttl = duration::parse_within(text, Duration::from_secs(2), HOUR)?;
    if ttl < Duration::from_secs(2) || ttl.subsec_nanos() != 0 {
        return Err("must be whole seconds, at least 2s".to_string());
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_originals() {
        let c = Config::default();
        assert_eq!(c.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(c.heartbeat_attempts, 3);
        assert_eq!(c.heartbeat_retry_delay, Duration::from_secs(1));
        assert_eq!(c.heartbeat_concurrency, 64);
        assert_eq!(c.notify_timeout, Duration::from_secs(2));
        assert_eq!(c.notify_queue, 1024);
        assert_eq!(c.max_instances, 10_000);
        assert_eq!((c.eviction_guard, c.eviction_guard_min), (50, 10));
        assert!(c.etcd.is_empty());
        assert_eq!(c.etcd_prefix, "/sparrow");
        assert_eq!(c.leader_ttl, Duration::from_secs(3));
    }

    #[test]
    fn checks_etcd_options() {
        assert!(etcd_url("http://127.0.0.1:2379").is_ok());
        for bad in [
            "127.0.0.1:2379",
            "http://h",
            "http://h:0",
            "http://h:1/x",
            "https://h:1",
        ] {
            assert!(etcd_url(bad).is_err(), "{bad}");
        }
        assert_eq!(etcd_prefix("/a/b/"), Ok("/a/b".to_string()));
        assert!(etcd_prefix("a").is_err());
        assert!(etcd_prefix("/").is_err());
        assert!(leader_ttl("1s").is_err());
        assert!(leader_ttl("2500ms").is_err());
        assert_eq!(leader_ttl("2s"), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn rejects_zero_and_huge_intervals() {
        for bad in ["0s", "10000000y"] {
            assert!(Flags::try_parse_from(["registry", "--heartbeat-interval", bad]).is_err());
        }
    }

    #[test]
    fn every_bound_is_enforced_and_stated_in_help() {
        let parse = |flag: &str, value: &str| Flags::try_parse_from(["registry", flag, value]);
        for (flag, refused, accepted) in [
            (
                "--heartbeat-interval",
                ["0s", "99ms", "2d"],
                ["100ms", "1h"],
            ),
            (
                "--heartbeat-retry-delay",
                ["0s", "9ms", "61s"],
                ["10ms", "1m"],
            ),
            ("--notify-timeout", ["0s", "9ms", "2m"], ["10ms", "5s"]),
            ("--etcd-timeout", ["0s", "99ms", "2m"], ["100ms", "1m"]),
            (
                "--busy-first-byte-timeout",
                ["0s", "-1s", "2h"],
                ["1ms", "1h"],
            ),
            ("--leader-ttl", ["0s", "1s", "2h"], ["2s", "1h"]),
            (
                "--heartbeat-attempts",
                ["0", "101", "4294967295"],
                ["1", "100"],
            ),
            (
                "--heartbeat-concurrency",
                ["0", "10001", "4294967295"],
                ["1", "10000"],
            ),
            (
                "--notify-queue",
                ["0", "1000001", "4294967295"],
                ["1", "1000000"],
            ),
            ("--max-instances", ["0", "1000001", "-1"], ["1", "1000000"]),
            ("--etcd-max-txn-ops", ["0", "2", "100001"], ["3", "100000"]),
            (
                "--etcd-max-request-bytes",
                ["0", "131071", "1073741825"],
                ["131072", "1073741824"],
            ),
        ] {
            for value in refused {
                assert!(parse(flag, value).is_err(), "{flag} {value}");
            }
            for value in accepted {
                assert!(parse(flag, value).is_ok(), "{flag} {value}");
            }
        }
        let help = <Flags as clap::CommandFactory>::command()
            .render_help()
            .to_string();
        for range in [
            "100ms to 1d",
            "10ms to 1m",
            "100ms to 1m",
            "2s to 1h",
            "1 to 100",
            "1 to 10000",
            "1 to 1000000",
            "3 to 100000",
            "131072 to 1073741824",
        ] {
            assert!(
                help.contains(range),
                "--help does not state {range}:\n{help}"
            );
        }
    }

    #[test]
    fn a_token_no_header_can_carry_is_refused() {
        for bad in ["", "sécret", "s3 cret"] {
            assert!(
                Flags::try_parse_from(["registry", "--token", bad]).is_err(),
                "{bad:?}"
            );
        }
        let cli = Flags::try_parse_from(["registry", "--token", "s3cret"]).unwrap();
        assert_eq!(cli.config.token.as_deref(), Some("s3cret"));
    }
}

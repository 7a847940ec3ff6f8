//! The registry's tunables, parsed from the command line (durations are
//! written like `500ms` or `30s`). The defaults are the original's.

use std::time::Duration;

use clap::{Args, Parser};
use protocol::accept::ServeSettings;
use protocol::duration::{self, DAY, HOUR, MILLISECOND};

#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Time between two heartbeat sweeps over every registered instance
    #[arg(long, default_value = "30s", value_parser = duration::within(MILLISECOND, DAY))]
    pub heartbeat_interval: Duration,

    /// Failed `GET /heart-beat` attempts in a row after which an instance is
    /// evicted and its dependents are notified
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub heartbeat_attempts: u32,

    /// Pause between two heartbeat attempts on the same instance
    #[arg(long, default_value = "1s", value_parser = duration::within(Duration::ZERO, HOUR))]
    pub heartbeat_retry_delay: Duration,

    /// Heartbeat requests in flight at once, at most
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub heartbeat_concurrency: u32,

    /// Deadline of every request the registry sends: each notification
    /// attempt and each heartbeat attempt
    #[arg(long, default_value = "2s", value_parser = duration::within(MILLISECOND, HOUR))]
    pub notify_timeout: Duration,

    /// Shared secret: registrations, deregistrations and notifications must
    /// carry `Authorization: Bearer TOKEN` (401 otherwise). Without it the
    /// protocol is open, as in the original
    #[arg(long, env = "SPARROW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    #[command(flatten)]
    pub serve: ServeSettings,
}

impl Default for Config {
    /// The defaults written on the flags above, so they live in one place.
    fn default() -> Self {
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            config: Config,
        }
        Defaults::parse_from(["registry"]).config
    }
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
    }

    #[test]
    fn rejects_zero_and_huge_intervals() {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        for bad in ["0s", "10000000y"] {
            assert!(Cli::try_parse_from(["registry", "--heartbeat-interval", bad]).is_err());
        }
    }
}

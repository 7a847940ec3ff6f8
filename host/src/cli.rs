//! The command line of `host`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};
use protocol::accept::{self, ServeSettings};

use crate::kv::StateLimits;
use crate::plugin::CompileCache;
use protocol::duration::{self, DAY, HOUR, MILLISECOND, MINUTE, SECOND};

/// Runs Sparrow services: serves HTTP on `--addr`, registers with the
/// registry, and hands every request to a WebAssembly component (the plugin)
/// in a fresh instance. `--config FILE` runs several services in this one
/// process instead.
#[derive(Debug, Parser)]
#[command(
    version,
    mut_args = duration::signed_values,
    after_help = "`host compile --plugin FILE` compiles a plugin into the cache ahead of a swap (see `host compile --help`)."
)]
pub struct Cli {
    /// The plugin: a WebAssembly component of the `sparrow:service` world.
    #[arg(long, required_unless_present = "config")]
    pub plugin: Option<PathBuf>,

    /// Where to listen (IP:PORT; port 0 picks a free port); also the
    /// address registered for this instance, unless `--advertise` says
    /// another.
    #[arg(long, required_unless_present = "config", value_parser = accept::listen_addr)]
    pub addr: Option<SocketAddr>,

    /// Run the services this TOML file lists, each in a `[[service]]`
    /// table with `plugin`, `addr` and any per-service option under its
    /// flag's name (`dir = "run"`, `request-timeout = "2s"`); the flags on
    /// the command line are then the host-wide ones (registry, memory
    /// limit, cache, metrics ...).
    #[arg(long, conflicts_with_all = ["plugin", "addr"])]
    pub config: Option<PathBuf>,

    /// The address other services are told to reach this instance at
    /// (HOST:PORT), when it differs from `--addr` (e.g. `--addr
    /// 0.0.0.0:20003`, which nobody can connect to).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,

    /// The registry's base URL; several, comma-separated, for replicas that
    /// share one table (`registry --etcd`): the host registers with one and
    /// moves to the next when it stops answering.
    #[arg(
        long,
        value_name = "URL[,URL...]",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:20000",
        env = "SPARROW_REGISTRY"
    )]
    pub registry: Vec<String>,

    /// The service name to register; defaults to the name the plugin
    /// describes. Required for a standard `wasi:http/proxy` component,
    /// which cannot describe itself.
    #[arg(long)]
    pub name: Option<String>,

    /// The services this one may call, comma-separated (`*` for every
    /// service); defaults to what the plugin describes.
    #[arg(long, value_delimiter = ',')]
    pub requires: Option<Vec<String>>,

    /// Addresses (`HOST:PORT`, comma-separated) a standard `wasi:http`
    /// component may send requests to besides the services it requires;
    /// by default none, and any other destination is refused.
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT", value_parser = outbound_addr)]
    pub allow_outbound: Vec<String>,

    /// The longest chain of calls between services (counted in
    /// `x-sparrow-hops`): a call past it fails (`invalid-request` from
    /// `call-service`, `loop-detected` for a standard component), so that
    /// services calling each other in a circle stop; 1 to 1000.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_hops: u32,

    /// How many instances of the services it requires this service keeps
    /// in its cache, 1 to 1000000: past it a notification of a new one is
    /// answered 507 and a registration answer's extra ones are left out
    /// (logged). Notifications come from whoever reaches the host unless
    /// `--token` is set, and every address would otherwise take memory.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_known_instances: u32,

    /// A directory the plugin may read and write, seen by it as `.`; without
    /// it the plugin sees no file at all.
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// How many files of `--dir` the host keeps open for the plugin's
    /// `files.append` (the most recently used), 1 to 1024; appending to
    /// another closes the least recently used.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_open_files: u32,

    /// Answer a request only once what the plugin wrote to `--dir` is on
    /// disk (concurrent requests share the flushes).
    #[arg(long, requires = "dir")]
    pub sync: bool,

    /// How long one request may run in the plugin before it is stopped (504);
    /// 1ms to 1h.
    #[arg(long, default_value = "10s", value_parser = duration::within(MILLISECOND, HOUR))]
    pub request_timeout: Duration,

    /// How long a call to another service may take (the plugin's
    /// `call-service` and `log-println`); 1ms to 1h.
    #[arg(long, default_value = "5s", value_parser = duration::within(MILLISECOND, HOUR))]
    pub call_timeout: Duration,

    /// The largest request body accepted (413 above it), and the largest
    /// answer read from another service, e.g. `16MiB`; 1B to 1GiB.
    #[arg(long, default_value = "16MiB", value_parser = size_within(1, 1 << 30))]
    pub max_body: usize,

    /// Let one instance serve up to N requests (one at a time), 1 to
    /// 4294967295, instead of a fresh instance per request (1): faster, but
    /// what the plugin keeps in its own memory is seen by later requests. An
    /// instance that fails is never reused.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub reuse: u32,

    /// How many instances may run at once, 1 to 10000; further requests wait
    /// for a slot. The pool of the process holds them (twice as many with
    /// `--reuse`), summed over its services, within the limit it states at
    /// start.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_instances: u32,

    /// How many requests may wait for an instance slot at once, 0 to
    /// 1000000; more are answered 503 with Retry-After at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_queue: u32,

    /// How long a request may wait for an instance slot before it is
    /// answered 503 with Retry-After; 0s to 1h.
    #[arg(long, default_value = "1s", value_parser = duration::within(Duration::ZERO, HOUR))]
    pub queue_timeout: Duration,

    /// Keep the plugin's key-value state in this file, so that it survives
    /// a restart; without it the state lives in memory only.
    #[arg(long)]
    pub state: Option<PathBuf>,

    /// The most keys the state may hold, 1 to 10000000.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub state_max_keys: u32,

    /// The largest state key, e.g. `1KiB`; 1B to 1GiB.
    #[arg(long, default_value = "1KiB", value_parser = size_within(1, 1 << 30))]
    pub state_max_key: usize,

    /// The largest state value, e.g. `64KiB`; 1B to 1GiB.
    #[arg(long, default_value = "64KiB", value_parser = size_within(1, 1 << 30))]
    pub state_max_value: usize,

    #[command(flatten)]
    pub compiling: CompileSettings,

    /// Shared secret of the registry (`registry --token`): sent with
    /// registrations, and required on the registry's notifications; visible
    /// ASCII, not empty.
    #[arg(long, env = "SPARROW_TOKEN", hide_env_values = true, value_parser = protocol::token::parse)]
    pub token: Option<String>,

    /// Register again when no heartbeat came for this long: the registry
    /// was restarted and lost its table (twice its default interval); 1s to
    /// 1d.
    #[arg(long, default_value = "60s", value_parser = duration::within(SECOND, DAY))]
    pub heartbeat_timeout: Duration,

    #[command(flatten)]
    pub serve: ServeSettings,

    /// How long to keep trying to register at start while no registry
    /// answers, before giving up (a registry's refusal ends the start at
    /// once); 0s to 1d.
    #[arg(long, default_value = "30s", value_parser = duration::within(Duration::ZERO, DAY))]
    pub registry_wait: Duration,

    /// At SIGTERM/SIGINT, how long a service goes on taking connections and
    /// requests after it deregistered, before it drains: callers that
    /// picked it before they heard it leave still reach it instead of
    /// finding a closed connection; 0s to 1m
    #[arg(long, default_value = "1s", value_parser = duration::within(Duration::ZERO, MINUTE))]
    pub stop_grace: Duration,

    /// Serve Prometheus metrics on `GET /metrics` at this address
    /// (HOST:PORT; port 0 picks a free port, logged as `metrics on ADDR`).
    /// Off by default: then nothing is counted. An address of its own, so
    /// that no path is taken from the plugin.
    #[arg(long, value_parser = accept::listen_addr)]
    pub metrics_addr: Option<SocketAddr>,

    /// Calls to at most this many other services are counted by name;
    /// calls to further ones count as `target="_other"` (the gateway calls
    /// whatever a client names, and each name would be kept for good), as
    /// do calls that found no instance of a name none reached yet and that
    /// the plugin does not require by name; 1 to 100000.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub metrics_max_targets: u32,

    /// Log one line per request for the plugin (method, path, status,
    /// duration, and the trace id, as every line about a request has).
    /// Off by default: a line per request costs a few microseconds.
    #[arg(long)]
    pub access_log: bool,
}

impl Cli {
    /// The plugin file of a service (`--plugin`, or its `plugin` key).
    pub fn plugin_path(&self) -> &std::path::Path {
        self.plugin
            .as_deref()
            .expect("every service has a plugin: clap and the config check it")
    }

    /// Where a service listens (`--addr`, or its `addr` key).
    pub fn listen_addr(&self) -> SocketAddr {
        self.addr
            .expect("every service has an address: clap and the config check it")
    }

    pub fn state_limits(&self) -> StateLimits {
        StateLimits {
            max_keys: self.state_max_keys as usize,
            max_key_bytes: self.state_max_key,
            max_value_bytes: self.state_max_value,
        }
    }

    /// `--requires` as given, without the empty names that `--requires ""`
    /// yields.
    pub fn requires(&self) -> Option<Vec<String>> {
        self.requires.as_ref().map(|names| {
            names
                .iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect()
        })
    }
}

/// A clap value parser for an `--allow-outbound` entry: `HOST:PORT` as a
/// URL names it, the one spelling a registered address has too. Entries
/// are matched as written, so another spelling (`http://...`, a path, no
/// port) would never match and silently allow nothing.
fn outbound_addr(text: &str) -> Result<String, String> {
    protocol::record::check_addr(text)
        .map(|()| text.to_owned())
        .map_err(|_| {
            format!("'{text}' is not HOST:PORT (an IPv4 address, [IPv6] or a DNS name, and a port)")
        })
}

/// A clap value parser for a size in `min..=max` bytes.
fn size_within(
    min: usize,
    max: usize,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |text| match parse_size(text)? {
        size if (min..=max).contains(&size) => Ok(size),
        _ => Err(format!(
            "'{text}' is out of range: from {} to {}",
            show_size(min),
            show_size(max)
        )),
    }
}

/// `bytes` in the largest binary unit that writes it whole, as a flag takes
/// it.
fn show_size(bytes: usize) -> String {
    UNITS
        .iter()
        .rev()
        .find(|(_, factor)| bytes.is_multiple_of(*factor) && bytes >= *factor)
        .map_or_else(
            || bytes.to_string(),
            |(unit, factor)| format!("{}{unit}", bytes / factor),
        )
}

/// What decides how a plugin is compiled and where the result is kept:
/// shared by serving and by `host compile`, which must agree on it for a
/// compiled plugin to be found in the cache.
#[derive(Debug, Clone, Args)]
pub struct CompileSettings {
    /// The most linear memory one instance may use, e.g. `64MiB`; 1MiB to
    /// 4GiB (all a 32-bit instance can address).
    #[arg(long, default_value = "64MiB", value_parser = size_within(1 << 20, 4 << 30))]
    pub memory_limit: usize,

    /// Where compiled plugins are kept, so that a restart does not compile
    /// again [default: $XDG_CACHE_HOME/sparrow or ~/.cache/sparrow].
    #[arg(long, env = "SPARROW_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// The most the compiled-plugin cache may hold; past it the entries used
    /// least recently are removed, e.g. `1GiB`; 1B to 1TiB (`--no-cache`
    /// keeps nothing).
    #[arg(long, default_value = "1GiB", value_parser = size_within(1, 1 << 40))]
    pub cache_max: usize,

    /// Compile the plugin at every start; keep nothing on disk.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
}

impl CompileSettings {
    /// The compiled-plugin cache directory, if caching is on.
    pub fn compile_cache(&self) -> Option<CompileCache> {
        if self.no_cache {
            return None;
        }
        let dir = self.cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache"))
                })?;
            Some(base.join("sparrow"))
        })?;
        Some(CompileCache {
            dir,
            max_bytes: self.cache_max as u64,
        })
    }
}

/// `host compile`: compiles a plugin into the cache, so that a swap to it
/// (or a start with it) finds it compiled. Give it the `--memory-limit` and
/// cache options of the host that will run the plugin.
#[derive(Debug, Parser)]
#[command(name = "host compile")]
pub struct CompileCli {
    /// The plugin to compile.
    #[arg(long)]
    pub plugin: PathBuf,

    #[command(flatten)]
    pub compiling: CompileSettings,
}

/// The units a size may be written in, each with its factor: binary ones
/// only.
const UNITS: [(&str, usize); 5] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Parses a size: a whole number of bytes, alone or with a binary unit
/// (`65536`, `512KiB`, `64MiB`, `1GiB`; any case). A decimal-looking unit
/// (`KB`, `MB`, `10G`) is refused rather than guessed: `10MB` is 10,000,000
/// bytes to some and 10 MiB to others, 4.9% apart.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let unit = unit.trim();
    let not_a_size = || {
        format!(
            "'{text}' is not a size: a whole number of bytes, or of KiB, MiB, GiB or TiB, like 64MiB"
        )
    };
    let number: usize = digits.parse().map_err(|_| not_a_size())?;
    let factor = match UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
    {
        Some((_, factor)) => *factor,
        None if unit.is_empty() => 1,
        None if is_decimal_unit(unit) => {
            return Err(format!(
                "'{text}': decimal units (kB, MB, GB) are not taken; write KiB, MiB, GiB or TiB (1MiB = 1048576 bytes)"
            ));
        }
        None => return Err(not_a_size()),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// `k`, `KB`, `m`, `Mb`, `G`, `tb`: units that could mean powers of 1000 or
/// of 1024.
fn is_decimal_unit(unit: &str) -> bool {
    let unit = unit.to_ascii_lowercase();
    let prefix = unit.strip_suffix('b').unwrap_or(&unit);
    matches!(prefix, "k" | "m" | "g" | "t")
}

#[cfg(test)]
mod tests {
    use super::{Cli, parse_size};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512kib"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("100B"), Ok(100));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        let fraction = parse_size("1.5MiB").unwrap_err();
        assert!(fraction.contains("a whole number"), "{fraction}");
    }

    #[test]
    fn decimal_units_are_refused_naming_the_binary_ones() {
        for text in ["10MB", "10kb", "10G", "10k", "1TB"] {
            let error = parse_size(text).unwrap_err();
            assert!(
                error.contains(&format!("'{text}'")) && error.contains("write KiB, MiB, GiB"),
                "{text}: {error}"
            );
        }
    }

    /// The first line of clap's error for `args` after a valid service.
    fn refusal(args: &[&str]) -> String {
        use clap::Parser as _;
        let service = ["host", "--plugin", "p.wasm", "--addr", "127.0.0.1:0"];
        let all = service.iter().chain(args);
        let error = Cli::try_parse_from(all).expect_err("refused");
        error
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn a_zero_size_is_refused_naming_the_flag() {
        for flag in [
            "--max-body",
            "--state-max-key",
            "--state-max-value",
            "--cache-max",
        ] {
            let error = refusal(&[flag, "0"]);
            assert!(
                error.contains(&format!("'0' for '{flag}")) && error.contains("from 1B to"),
                "{flag}: {error}"
            );
        }
    }

    #[test]
    fn a_negative_value_is_refused_naming_the_flag() {
        for (flag, value) in [
            ("--max-body", "-1"),
            ("--max-instances", "-1"),
            ("--request-timeout", "-5s"),
            ("--max-connections", "-1"),
            ("--header-timeout", "-5s"),
        ] {
            let error = refusal(&[flag, value]);
            assert!(
                error.contains(&format!("'{value}' for '{flag}")),
                "{flag} {value}: {error}"
            );
        }
    }

    #[test]
    fn a_listen_address_that_is_not_ip_and_port_is_refused_naming_the_flag() {
        use clap::Parser as _;
        let error = Cli::try_parse_from(["host", "--plugin", "p.wasm", "--addr", "nonsense"])
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("'nonsense' for '--addr") && error.contains("IP:PORT"),
            "{error}"
        );
    }

    #[test]
    fn the_help_states_the_range_of_every_count() {
        use clap::CommandFactory as _;
        let help = Cli::command().render_long_help().to_string();
        for (flag, range) in [
            ("--max-connections", "1 to 1000000"),
            ("--backlog", "1 to 65535"),
            ("--max-instances", "1 to 10000"),
            ("--max-queue", "0 to 1000000"),
            ("--max-hops", "1 to 1000"),
            ("--max-known-instances", "1 to 1000000"),
            ("--max-open-files", "1 to 1024"),
            ("--state-max-keys", "1 to 10000000"),
            ("--state-max-key ", "1B to 1GiB"),
            ("--state-max-value", "1B to 1GiB"),
            ("--metrics-max-targets", "1 to 100000"),
            ("--reuse", "1 to 4294967295"),
        ] {
            let text = help.split(flag).nth(1).unwrap_or_default();
            let own = text.split("\n      --").next().unwrap_or_default();
            let own = own.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(own.contains(range), "{flag}: {own}");
        }
    }
}

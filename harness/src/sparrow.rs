//! How Sparrow's own processes are started: the flags of a registry and of
//! a host, and the tests' shortcuts that start them on free loopback ports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::paths::binary;
use crate::process::{Launch, Proc, START_TIMEOUT};
use crate::registry_api::lists;
use crate::wait::poll_until;

/// The registry's heartbeat settings.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeats {
    pub interval: Duration,
    pub attempts: u32,
    pub retry_delay: Duration,
}

/// The tests' registries: a dead instance is evicted within about 1.4 s,
/// which a test can wait for (the default, 30 s, it could not).
pub const FAST_HEARTBEATS: Heartbeats = Heartbeats {
    interval: Duration::from_secs(1),
    attempts: 2,
    retry_delay: Duration::from_millis(200),
};

/// For a registry that must keep fake instances, which answer nothing:
/// no heartbeat comes during a test.
pub const NO_HEARTBEAT: &[&str] = &["--heartbeat-interval", "1h"];

impl Heartbeats {
    /// The registry's flags for these settings.
    pub fn flags(&self) -> [(&'static str, String); 3] {
        let millis = |d: Duration| format!("{}ms", d.as_millis());
        [
            ("--heartbeat-interval", millis(self.interval)),
            ("--heartbeat-attempts", self.attempts.to_string()),
            ("--heartbeat-retry-delay", millis(self.retry_delay)),
        ]
    }
}

impl Launch {
    /// The registry `program` on `addr`.
    pub fn registry(program: impl Into<PathBuf>, addr: &str) -> Launch {
        Launch::new("registry", program).args(["--addr", addr])
    }

    /// The host `program` serving `plugin` on `addr`, registered with the
    /// registry at `registry_url`; named after the plugin's file.
    pub fn host(
        program: impl Into<PathBuf>,
        plugin: &Path,
        addr: &str,
        registry_url: &str,
    ) -> Launch {
        let name = plugin.file_stem().unwrap_or_default().to_string_lossy();
        Launch::new(name, program)
            .arg("--plugin")
            .arg(plugin)
            .args(["--addr", addr, "--registry", registry_url])
    }
}

/// The command line of a host run in process (`host::Cli::parse_from`):
/// the plugin `name` on a free port, registered with `registry_url`,
/// compiled without a cache; then `extra`.
pub fn in_process_host_args(name: &str, registry_url: &str, extra: &[&str]) -> Vec<String> {
    let plugin = crate::paths::plugin(name);
    let mut args: Vec<String> = vec!["host".into(), "--plugin".into()];
    args.push(plugin.to_string_lossy().into_owned());
    args.extend(
        [
            "--addr",
            "127.0.0.1:0",
            "--registry",
            registry_url,
            "--no-cache",
        ]
        .map(String::from),
    );
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

/// The tests' shortcuts: each panics, with the process's log, when it does
/// not start.
impl Proc {
    /// A registry on a free port with [`FAST_HEARTBEATS`], except for the
    /// settings `extra` gives.
    pub fn registry(extra: &[&str]) -> Proc {
        Proc::registry_at("127.0.0.1:0", extra)
    }

    /// [`Proc::registry`] on `addr`.
    pub fn registry_at(addr: &str, extra: &[&str]) -> Proc {
        let mut launch = Launch::registry(binary("registry"), addr);
        for (flag, value) in FAST_HEARTBEATS.flags() {
            if !extra.contains(&flag) {
                launch = launch.args([flag, value.as_str()]);
            }
        }
        started(launch.args(extra))
    }

    /// A host of `plugin` on a free port, once `registry` lists it.
    pub fn host(plugin: &Path, registry: &Proc, extra: &[&str]) -> Proc {
        let launch = Launch::host(binary("host"), plugin, "127.0.0.1:0", &registry.url(""));
        let host = started(launch.args(extra));
        // A host answers before it has registered: until then it knows none
        // of the services it requires, and its tasks started alongside (the
        // plugin file's watcher) may not have run yet.
        let addr = host.addr().to_string();
        assert!(
            poll_until(START_TIMEOUT, || lists(registry, &addr)),
            "{} at {addr} never appeared in the registry's table:\n{}",
            host.name(),
            host.log()
        );
        host
    }
}

/// One `[[service]]` of a host's `--config` file.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub plugin: PathBuf,
    pub addr: String,
    /// Further options: (key, value), the flag `--key value` or the TOML
    /// `key = "value"`.
    pub options: Vec<(String, String)>,
    /// Options that take no value: the flag `--key`, or `key = true`.
    pub switches: Vec<String>,
}

impl ServiceSpec {
    /// `plugin` on a free loopback address.
    pub fn new(plugin: &Path) -> ServiceSpec {
        let addr = crate::ports::free_addr().expect("a free loopback port");
        ServiceSpec {
            plugin: plugin.to_owned(),
            addr: addr.to_string(),
            options: Vec::new(),
            switches: Vec::new(),
        }
    }

    /// Adds an option (`dir`, `/tmp/x`), given as a string either way.
    pub fn option(mut self, key: &str, value: &str) -> ServiceSpec {
        self.options.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Turns on an option that takes no value (`access-log`).
    pub fn switch(mut self, key: &str) -> ServiceSpec {
        self.switches.push(key.to_owned());
        self
    }

    /// The options as host flags.
    pub fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for (key, value) in &self.options {
            flags.extend([format!("--{key}"), value.clone()]);
        }
        flags.extend(self.switches.iter().map(|key| format!("--{key}")));
        flags
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The `--config` file of a host running `services`.
pub fn config_text(services: &[ServiceSpec]) -> String {
    let mut text = String::new();
    for service in services {
        text.push_str(&format!(
            "[[service]]\nplugin = {:?}\naddr = {:?}\n",
            service.plugin.display().to_string(),
            service.addr
        ));
        for (key, value) in &service.options {
            text.push_str(&format!("{key} = {value:?}\n"));
        }
        for key in &service.switches {
            text.push_str(&format!("{key} = true\n"));
        }
        text.push('\n');
    }
    text
}

impl Proc {
    /// A host of `service` alone, as the flags give it, once `registry`
    /// lists it.
    pub fn service_host(service: &ServiceSpec, registry: &Proc, extra: &[&str]) -> Proc {
        let launch = Launch::host(
            binary("host"),
            &service.plugin,
            &service.addr,
            &registry.url(""),
        )
        .args(service.flags())
        .args(extra);
        let host = started(launch);
        assert!(
            poll_until(START_TIMEOUT, || lists(registry, &service.addr)),
            "{} at {} never appeared in the registry's table:\n{}",
            host.name(),
            service.addr,
            host.log()
        );
        host
    }

    /// One host process running `services` (its config written to
    /// `config`), once `registry` lists every one of them.
    pub fn multi_host(
        config: &Path,
        services: &[ServiceSpec],
        registry: &Proc,
        extra: &[&str],
    ) -> Proc {
        std::fs::write(config, config_text(services)).expect("writing the host's config");
        let launch = Launch::new("multi-host", binary("host"))
            .arg("--config")
            .arg(config)
            .args(["--registry", &registry.url("")])
            .args(extra);
        let host = started(launch);
        for service in services {
            assert!(
                poll_until(START_TIMEOUT, || lists(registry, &service.addr)),
                "{} at {} never appeared in the registry's table:\n{}",
                service.plugin.display(),
                service.addr,
                host.log()
            );
        }
        host
    }
}

fn started(launch: Launch) -> Proc {
    launch.start().unwrap_or_else(|e| panic!("{e:#}"))
}

//! `host --config FILE`: the services one host process runs, from a TOML
//! file with one `[[service]]` table per service.
//!
//! A table's keys are the per-service flags of `host`, under the same names
//! (`plugin`, `addr`, `dir`, `request-timeout`, ...), so a service reads the
//! same in a file as on a command line. Each table is turned into those
//! flags and parsed by the same parser as a command line, after the
//! host-wide flags the process was given: one set of names, defaults,
//! ranges and messages for both. A bad file is refused at start with one
//! line naming the file, the service and the key.

use anyhow::{Context as _, bail};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;

use crate::cli::Cli;

/// The flags that belong to one service: the keys a `[[service]]` table
/// may hold. Everything else is host-wide and stays on the command line.
const PER_SERVICE: [&str; 23] = [
    "plugin",
    "addr",
    "advertise",
    "name",
    "requires",
    "allow-outbound",
    "max-hops",
    "max-known-instances",
    "dir",
    "max-open-files",
    "sync",
    "request-timeout",
    "call-timeout",
    "max-body",
    "reuse",
    "max-instances",
    "max-queue",
    "queue-timeout",
    "state",
    "state-max-keys",
    "state-max-key",
    "state-max-value",
    "access-log",
];

/// The services the command line `args` (the program's name first) asks
/// for: the one its flags describe, or those of its `--config` file. Help,
/// version and usage errors are clap's, for the caller to print.
pub fn services(args: Vec<OsString>) -> anyhow::Result<Vec<Cli>> {
    let matches = Cli::command().try_get_matches_from(&args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let Some(file) = cli.config.clone() else {
        return Ok(vec![cli]);
    };
    let shown = file.display().to_string();
    if let Some(flag) = PER_SERVICE.iter().find(|flag| {
        matches.value_source(&flag.replace('-', "_")) == Some(ValueSource::CommandLine)
    }) {
        bail!(
            "--{flag} is an option of each service: with --config, give it as `{flag} = ...` in the service's table of {shown}"
        );
    }
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {shown}"))?;
    let host_wide = without_config(&args);
    let mut services = parse(&text, &host_wide).with_context(|| shown.clone())?;
    // So that what goes wrong later, at start, names the file too.
    for service in &mut services {
        service.config = Some(file.clone());
    }
    Ok(services)
}

/// The command line without `--config FILE` (or `--config=FILE`).
fn without_config(args: &[OsString]) -> Vec<OsString> {
    let mut kept = Vec::with_capacity(args.len());
    let mut skip_next = false;
    for arg in args {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        if arg == "--config" {
            skip_next = true;
        } else if !arg.to_string_lossy().starts_with("--config=") {
            kept.push(arg.clone());
        }
    }
    kept
}

/// Every `[[service]]` of `text`, each parsed after the host-wide flags.
fn parse(text: &str, host_wide: &[OsString]) -> anyhow::Result<Vec<Cli>> {
    let table: toml::Table = text.parse().context("not valid TOML")?;
    if let Some(key) = table.keys().find(|key| *key != "service") {
        bail!(
            "unknown top-level key '{key}': the file holds [[service]] tables; host-wide settings are flags"
        );
    }
    let Some(list) = table.get("service") else {
        bail!("no [[service]] table");
    };
    let Some(list) = list.as_array().filter(|list| !list.is_empty()) else {
        bail!("'service' must be a list of [[service]] tables");
    };
    let mut addrs = HashSet::new();
    // Calls in process find a service by the address it registers: two on
    // one address would take each other's calls.
    let mut registered = HashMap::new();
    let mut services = Vec::with_capacity(list.len());
    for (n, entry) in list.iter().enumerate() {
        let label = label(n, entry);
        let Some(entry) = entry.as_table() else {
            bail!("{label}: not a table");
        };
        let cli = service(entry, host_wide).with_context(|| label.clone())?;
        // Port 0: each gets a port of its own when it binds.
        if cli.listen_addr().port() != 0 && !addrs.insert(cli.listen_addr()) {
            bail!(
                "{label}: addr {} is another service's too",
                cli.listen_addr()
            );
        }
        if let Some((key, addr)) = registered_addr(&cli) {
            if let Some(other) = registered.get(&addr) {
                bail!("{label}: {key} {addr} is the address {other} registers too");
            }
            registered.insert(addr, label);
        }
        services.push(cli);
    }
    Ok(services)
}

/// The address `cli` will register, as it is known before it listens, and
/// the key that gives it: `advertise` as written, else `addr`, unless its
/// port is 0 (a port picked when it binds, unlike any other's).
fn registered_addr(cli: &Cli) -> Option<(&'static str, String)> {
    match &cli.advertise {
        Some(advertised) => Some(("advertise", advertised.trim().to_owned())),
        None => {
            let addr = cli.listen_addr();
            (addr.port() != 0).then(|| ("addr", addr.to_string()))
        }
    }
}

/// `service 2 (plugins/visit.wasm)`: how errors name a table.
fn label(n: usize, entry: &toml::Value) -> String {
    match entry.get("plugin").and_then(toml::Value::as_str) {
        Some(plugin) => format!("service {} ({plugin})", n + 1),
        None => format!("service {}", n + 1),
    }
}

/// One table as the flags it stands for, parsed.
fn service(entry: &toml::Table, host_wide: &[OsString]) -> anyhow::Result<Cli> {
    for required in ["plugin", "addr"] {
        if !entry.contains_key(required) {
            bail!("missing key '{required}'");
        }
    }
    let mut args = host_wide.to_vec();
    for (key, value) in entry {
        if !PER_SERVICE.contains(&key.as_str()) {
            if Cli::command()
                .get_arguments()
                .any(|arg| arg.get_long() == Some(key.as_str()))
            {
                bail!("key '{key}' is host-wide: give it as the flag --{key}, for every service");
            }
            bail!("unknown key '{key}'");
        }
        let flag = format!("--{key}");
        let (switch, list) = kind(key);
        match value {
            toml::Value::Boolean(_) if !switch => {
                bail!("key '{key}': true or false is not a value it takes")
            }
            toml::Value::Boolean(true) => args.push(flag.into()),
            toml::Value::Boolean(false) => {}
            _ if switch => bail!("key '{key}': true or false is expected"),
            // Joined with `=`, so that a value starting with `-` (`-1`) is
            // the flag's value, which clap then names in its error.
            toml::Value::String(text) => args.push(format!("{flag}={text}").into()),
            toml::Value::Integer(number) => args.push(format!("{flag}={number}").into()),
            // A list key also takes one string, as its flag does: `requires
            // = "log"` or `"a,b"`, as `--requires a,b`.
            toml::Value::Array(_) if !list => {
                bail!("key '{key}': a list is not a value it takes; give one value, not [...]")
            }
            toml::Value::Array(items) => {
                let names: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
                let Some(names) = names else {
                    bail!("key '{key}': a list of strings is expected");
                };
                // Joined with commas below, one would become two items.
                if let Some(joined) = names.iter().find(|name| name.contains(',')) {
                    bail!(
                        "key '{key}': '{joined}' holds a comma; give each as an item of the list"
                    );
                }
                args.push(format!("{flag}={}", names.join(",")).into());
            }
            other => bail!(
                "key '{key}': a {} is not a value it takes",
                other.type_str()
            ),
        }
    }
    Cli::try_parse_from_args(&args)
}

/// Whether the flag `--{key}` is a switch, given or not, rather than one
/// that takes a value; and whether it takes a list (comma-separated on the
/// command line).
fn kind(key: &str) -> (bool, bool) {
    Cli::command()
        .get_arguments()
        .find(|arg| arg.get_long() == Some(key))
        .map_or((false, false), |arg| {
            (
                !arg.get_action().takes_values(),
                arg.get_value_delimiter().is_some(),
            )
        })
}

impl Cli {
    /// Parses `args` like a command line; the error is clap's first line,
    /// which names the flag (the key) and what is wrong with its value.
    fn try_parse_from_args(args: &[OsString]) -> anyhow::Result<Cli> {
        use clap::Parser as _;
        Cli::try_parse_from(args).map_err(|e| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            anyhow::anyhow!("{}", first.trim_start_matches("error: "))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn args(extra: &[&str]) -> Vec<OsString> {
        ["host"].iter().chain(extra).map(OsString::from).collect()
    }

    fn error(text: &str) -> String {
        format!("{:#}", parse(text, &args(&[])).unwrap_err())
    }

    #[test]
    fn each_table_is_a_service_with_its_own_options_over_the_host_wide_flags() {
        let text = r#"
            [[service]]
            plugin = "gateway.wasm"
            addr = "127.0.0.1:20001"
            request-timeout = "2s"

            [[service]]
            plugin = "log.wasm"
            addr = "127.0.0.1:20002"
            dir = "run"
            max-open-files = 4
            sync = true
            requires = ["a", "b"]
            max-instances = 8
        "#;
        let services = parse(text, &args(&["--registry", "http://127.0.0.1:1"])).unwrap();
        assert_eq!(services.len(), 2);
        assert_eq!(services[0].request_timeout.as_secs(), 2);
        assert_eq!(services[1].request_timeout.as_secs(), 10);
        assert_eq!(services[1].dir.as_deref(), Some(Path::new("run")));
        assert_eq!(services[1].max_open_files, 4);
        assert_eq!(services[0].max_open_files, 16);
        assert!(services[1].sync);
        assert_eq!(services[1].requires(), Some(vec!["a".into(), "b".into()]));
        assert_eq!(services[1].max_instances, 8);
        for service in &services {
            assert_eq!(service.registry, ["http://127.0.0.1:1"]);
        }
    }

    #[test]
    fn errors_name_the_service_and_the_key() {
        let service = "[[service]]\nplugin = \"v.wasm\"\naddr = \"127.0.0.1:1\"\n";
        let bad_value = error(&format!("{service}request-timeout = \"0s\""));
        assert!(bad_value.contains("service 1 (v.wasm)"), "{bad_value}");
        assert!(bad_value.contains("--request-timeout"), "{bad_value}");
        let unknown = error(&format!("{service}colour = \"red\""));
        assert!(unknown.contains("unknown key 'colour'"), "{unknown}");
        let host_wide = error(&format!("{service}registry = \"http://x\""));
        assert!(host_wide.contains("'registry' is host-wide"), "{host_wide}");
        let missing = error("[[service]]\nplugin = \"v.wasm\"");
        assert!(missing.contains("missing key 'addr'"), "{missing}");
        let twice = error(&format!("{service}{service}"));
        assert!(twice.contains("service 2"), "{twice}");
        // A switch takes true or false, and a value starting with '-' is
        // the key's value, not a flag: both name the key.
        let switch = error(&format!("{service}sync = \"yes\""));
        assert!(switch.contains("key 'sync': true or false"), "{switch}");
        let negative = error(&format!("{service}max-instances = -1"));
        assert!(negative.contains("--max-instances"), "{negative}");
        let not_a_switch = error(&format!("{service}max-instances = true"));
        assert!(
            not_a_switch.contains("key 'max-instances'"),
            "{not_a_switch}"
        );
        assert!(error("x = 1").contains("unknown top-level key 'x'"));
        assert!(error("[[service]").contains("not valid TOML"));
    }

    #[test]
    fn a_list_for_a_key_of_one_value_is_refused_naming_the_service_and_the_key() {
        let service = "[[service]]\nplugin = \"v.wasm\"\naddr = \"127.0.0.1:1\"\n";
        let addr = error("[[service]]\nplugin = \"v.wasm\"\naddr = [\"127.0.0.1:1\"]\n");
        assert_eq!(
            addr,
            "service 1 (v.wasm): key 'addr': a list is not a value it takes; give one value, not [...]"
        );
        let name = error(&format!("{service}name = [\"a\", \"b\"]"));
        assert!(
            name.contains("service 1 (v.wasm): key 'name': a list"),
            "{name}"
        );
        let comma = error(&format!("{service}requires = [\"a,b\"]"));
        assert!(
            comma.contains("key 'requires': 'a,b' holds a comma"),
            "{comma}"
        );
    }

    #[test]
    fn a_list_key_also_takes_one_string_as_its_flag_does() {
        let text = "[[service]]\nplugin = \"v.wasm\"\naddr = \"127.0.0.1:1\"\nrequires = \"log\"\nallow-outbound = \"127.0.0.1:2,127.0.0.1:3\"\n";
        let services = parse(text, &args(&[])).unwrap();
        assert_eq!(services[0].requires(), Some(vec!["log".into()]));
        assert_eq!(services[0].allow_outbound, ["127.0.0.1:2", "127.0.0.1:3"]);
    }

    #[test]
    fn two_services_that_would_register_one_address_are_refused() {
        let service = |plugin: &str, addr: &str, advertise: Option<&str>| {
            let mut text = format!("[[service]]\nplugin = \"{plugin}\"\naddr = \"{addr}\"\n");
            if let Some(advertise) = advertise {
                text.push_str(&format!("advertise = \"{advertise}\"\n"));
            }
            text
        };
        let both_advertised = error(&format!(
            "{}{}",
            service("log.wasm", "127.0.0.1:1", Some("127.0.0.1:5")),
            service("visit.wasm", "127.0.0.1:2", Some("127.0.0.1:5"))
        ));
        assert_eq!(
            both_advertised,
            "service 2 (visit.wasm): advertise 127.0.0.1:5 is the address service 1 (log.wasm) registers too"
        );
        let advertised_and_listened = error(&format!(
            "{}{}",
            service("log.wasm", "127.0.0.1:1", Some("127.0.0.1:2")),
            service("visit.wasm", "127.0.0.1:2", None)
        ));
        assert_eq!(
            advertised_and_listened,
            "service 2 (visit.wasm): addr 127.0.0.1:2 is the address service 1 (log.wasm) registers too"
        );
        // Ports picked when binding never collide.
        let picked = format!(
            "{}{}",
            service("log.wasm", "127.0.0.1:0", None),
            service("visit.wasm", "127.0.0.1:0", None)
        );
        assert_eq!(parse(&picked, &args(&[])).unwrap().len(), 2);
        // What a service listens on is not registered when it advertises
        // another address.
        let crossed = format!(
            "{}{}",
            service("log.wasm", "127.0.0.1:1", Some("127.0.0.1:2")),
            service("visit.wasm", "127.0.0.1:2", Some("127.0.0.1:1"))
        );
        assert_eq!(parse(&crossed, &args(&[])).unwrap().len(), 2);
    }

    #[test]
    fn per_service_flags_on_the_command_line_are_refused_with_config() {
        let error = services(args(&["--config", "s.toml", "--dir", "run"])).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("--dir is an option of each service"),
            "{error}"
        );
    }

    #[test]
    fn without_config_the_flags_are_the_one_service() {
        let one = services(args(&["--plugin", "v.wasm", "--addr", "127.0.0.1:1"])).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].plugin_path(), Path::new("v.wasm"));
    }
}

//! Plugins written in Python (`visit-py`, componentize-py) and JavaScript
//! (`hello-js`, jco) run in the unchanged host, behind the Rust gateway and
//! next to the Rust plugins, using the same imports; so do standard
//! `wasi:http` components in both languages.
//!
//! Their components embed a whole language runtime (12-18 MB): the first
//! start of a host compiles it for seconds, which the harness's start
//! timeout allows for.

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use harness::load::Load;
use harness::{Proc, TempDir, binary, get, plugin, poll_until, registered};

const SETTLE: Duration = Duration::from_secs(30);

/// Compiling a language runtime keeps both cores busy for seconds: one test
/// at a time keeps each host's start far from the harness's start timeout,
/// and a later test finds the compiled plugin in the host's cache.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next test can still run.
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn python_and_javascript_plugins_serve_behind_the_gateway_next_to_rust() {
    let _serial = one_at_a_time();
    let dir = TempDir::new("polyglot");
    let registry = Proc::registry(&[]);
    let log = Proc::host(
        &plugin("log"),
        &registry,
        &["--dir", dir.path().to_str().unwrap()],
    );
    let gateway = Proc::host(&plugin("gateway"), &registry, &[]);
    let visit = Proc::host(&plugin("visit"), &registry, &[]);
    let visit_py = Proc::host(&plugin("visit-py"), &registry, &[]);
    let hello_js = Proc::host(&plugin("hello-js"), &registry, &[]);
    assert!(poll_until(SETTLE, || {
        ["log", "gateway", "visit", "visit-py", "hello-js"]
            .iter()
            .all(|service| registered(&registry, service).len() == 1)
    }));

    // Python: state.increment and log-println, as the Rust visit does.
    for expected in 1..=3 {
        let reply = get(&gateway.url("/visit-py/"));
        assert_eq!(reply.status, 200, "{}\n{}", reply.text(), visit_py.log());
        assert_eq!(reply.text(), expected.to_string());
    }
    // The Rust visit keeps its own count, in its own host.
    let reply = get(&gateway.url("/visit/"));
    assert_eq!((reply.status, reply.text().as_str()), (200, "1"));

    // JavaScript: call-service reaches visit-py (Python) through the host,
    // whose answer becomes part of the greeting; then state and log.
    let reply = get(&gateway.url("/hello-js/?name=Ada"));
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), hello_js.log());
    assert_eq!(reply.text(), "Hello, Ada! You are visitor 4.");
    assert_eq!(
        reply.headers.get("content-type").unwrap(),
        "text/plain; charset=utf-8"
    );

    let lines = std::fs::read_to_string(dir.path().join("services.log")).unwrap();
    let sources: Vec<&str> = lines
        .lines()
        .map(|line| line.split_once(' ').expect("TIMESTAMP SOURCE: MESSAGE").1)
        .collect();
    assert_eq!(
        sources,
        [
            "visit-py: 1",
            "visit-py: 2",
            "visit-py: 3",
            "visit: 1",
            "visit-py: 4",
            "hello-js: greeted Ada (greeting 1)",
        ]
    );
    drop((log, visit));
}

#[test]
fn a_javascript_plugin_sees_call_errors_as_exceptions() {
    let _serial = one_at_a_time();
    let registry = Proc::registry(&[]);
    let hello_js = Proc::host(&plugin("hello-js"), &registry, &[]);

    // No visit-py anywhere: call-service fails with `no-instance`, which the
    // plugin turns into its own answer rather than a trap.
    let reply = get(&hello_js.url("/"));
    assert_eq!(reply.status, 503, "{}\n{}", reply.text(), hello_js.log());
    assert_eq!(reply.text(), "no instance of service 'visit-py'");
}

/// The deploy sequence of docs/plugins.md: `host compile` the new version
/// into the host's cache, then rename it into place. The swap from the Rust
/// visit to the Python one (a whole interpreter) then fails no request; how
/// soon the new version answers is the benchmark's to measure (`hot-swap`).
#[test]
fn a_swap_to_a_precompiled_python_plugin_under_load_fails_no_request() {
    let _serial = one_at_a_time();
    let dir = TempDir::new("python-swap");
    let cache = dir.path().join("cache");
    let cache_arg = ["--cache-dir", cache.to_str().unwrap()];
    let served = dir.path().join("visit.wasm");
    std::fs::copy(plugin("visit"), &served).unwrap();
    let registry = Proc::registry(&[]);
    let _log = Proc::host(
        &plugin("log"),
        &registry,
        &["--dir", dir.path().to_str().unwrap()],
    );
    let visit = Proc::host(&served, &registry, &cache_arg);

    let compiled = Command::new(binary("host"))
        .arg("compile")
        .arg("--plugin")
        .arg(plugin("visit-py"))
        .args(cache_arg)
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );

    let load = Load::start(&visit.url("/"), 4);
    assert!(load.wait_for_more(50, SETTLE), "{}", visit.log());
    let incoming = dir.path().join("visit.wasm.new");
    std::fs::copy(plugin("visit-py"), &incoming).unwrap();
    let renamed = Instant::now();
    std::fs::rename(&incoming, &served).unwrap();
    let lines = || std::fs::read_to_string(dir.path().join("services.log")).unwrap_or_default();
    assert!(
        poll_until(SETTLE, || lines().contains(" visit-py: ")),
        "{}",
        visit.log()
    );
    eprintln!(
        "the Python version answered {:?} after the rename",
        renamed.elapsed()
    );
    assert!(load.wait_for_more(50, SETTLE), "{}", visit.log());
    let (ok, failures) = load.stop();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        visit.log().contains("compiled plugin taken from the cache"),
        "the swap compiled again:\n{}",
        visit.log()
    );
    // The new version describes itself anew.
    assert!(poll_until(SETTLE, || registered(&registry, "visit-py")
        .len()
        == 1));
}

/// Standard `wasi:http/proxy` components written in Python (componentize-py)
/// and JavaScript (jco), each against WASI's own WIT: named on the command
/// line, served behind the gateway.
#[test]
fn python_and_javascript_wasi_http_components_serve_behind_the_gateway() {
    let _serial = one_at_a_time();
    let registry = Proc::registry(&[]);
    let gateway = Proc::host(&plugin("gateway"), &registry, &[]);
    let languages = [
        ("hello-http-py", "hello-py", "Python"),
        ("hello-http-js", "hello-js-http", "JavaScript"),
    ];
    let hosts: Vec<Proc> = languages
        .iter()
        .map(|(file, name, _)| Proc::host(&plugin(file), &registry, &["--name", name]))
        .collect();
    assert!(poll_until(SETTLE, || {
        languages
            .iter()
            .all(|(_, name, _)| registered(&registry, name).len() == 1)
    }));
    for ((_, name, language), host) in languages.iter().zip(&hosts) {
        let reply = get(&gateway.url(&format!("/{name}/hello/Ada")));
        assert_eq!(reply.status, 200, "{}\n{}", reply.text(), host.log());
        assert_eq!(reply.text(), format!("Hello, Ada! ({language})\n"));
        assert_eq!(reply.headers["x-hello"], "wasi:http/proxy");
        assert_eq!(get(&gateway.url(&format!("/{name}/elsewhere"))).status, 404);
    }
}

//! Lean Rust plugins (`sparrow-plugin` without its `std` feature): their
//! components import no WASI interface, which is what makes their instances
//! cheap, and their heap holds what a request needs beyond its arena and
//! gives back what it frees.

use std::path::Path;
use std::time::Duration;

use harness::{Proc, plugin, poll_until, send, stub};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

const SETTLE: Duration = Duration::from_secs(30);

/// The interfaces the component at `path` imports.
fn imports(path: &Path) -> Vec<String> {
    let engine = Engine::new(&Config::new()).unwrap();
    let component = Component::from_file(&engine, path).unwrap();
    component
        .component_type()
        .imports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[test]
fn the_lean_plugins_import_no_more_of_wasi_than_they_use() {
    for path in [plugin("gateway"), plugin("visit")] {
        let imports = imports(&path);
        assert!(
            imports.iter().all(|i| i.starts_with("sparrow:service/")),
            "{} imports {imports:?}",
            path.display()
        );
    }
    // The log declares the wall clock for its timestamps, and that only.
    let log = imports(&plugin("log"));
    let wasi: Vec<&String> = log.iter().filter(|i| i.starts_with("wasi:")).collect();
    assert!(
        wasi.len() == 1 && wasi[0].starts_with("wasi:clocks/wall-clock@"),
        "{log:?}"
    );
    // The check sees WASI where it is: a plugin built with the standard
    // library imports its command-line interfaces.
    let std = imports(&stub("echo"));
    assert!(std.iter().any(|i| i.starts_with("wasi:cli/")), "{std:?}");
}

#[test]
fn a_lean_plugin_grows_past_its_arena_and_reuses_what_it_frees() {
    let registry = Proc::registry(&[]);
    let _echo = Proc::host(&stub("echo"), &registry, &[]);
    // Each request brings the gateway 600 KiB in and the same back, more
    // than its 256 KiB arena. Twenty requests per instance, in 8 MiB: a
    // heap that kept what was freed would run out and trap.
    let gateway = Proc::host(
        &plugin("gateway"),
        &registry,
        &["--reuse", "20", "--memory-limit", "8MiB"],
    );
    assert!(poll_until(SETTLE, || {
        send("POST", &gateway.url("/echo/x"), &[], b"hi").is_ok_and(|r| r.status == 200)
    }));
    let body: Vec<u8> = (0..600 * 1024).map(|i| (i % 251) as u8).collect();
    for i in 0..60 {
        let reply = send("POST", &gateway.url("/echo/x"), &[], &body).unwrap();
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        assert!(
            reply.body == body,
            "request {i}: the body came back changed"
        );
    }
}

#[test]
fn a_log_line_that_does_not_reach_the_log_is_logged_by_the_host() {
    // A lean plugin has no stderr to say so itself.
    let registry = Proc::registry(&[]);
    let visit = Proc::host(&plugin("visit"), &registry, &[]);
    let reply = send("GET", &visit.url("/"), &[], b"").unwrap();
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        reply.text().contains("no instance of the log service"),
        "{}",
        reply.text()
    );
    assert!(
        visit.wait_for_log("log-println failed: no instance of the log service", SETTLE),
        "{}",
        visit.log_tail(20)
    );
    assert!(
        visit.log().contains("service=visit"),
        "{}",
        visit.log_tail(20)
    );
}

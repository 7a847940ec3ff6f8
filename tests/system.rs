//! The whole system across processes: registry, log, visit and gateway
//! hosts running the real plugins, on free loopback ports.

use std::time::Duration;

use harness::{Proc, TempDir, get, plugin, poll_until, registered};

const SETTLE: Duration = Duration::from_secs(20);

#[test]
fn visits_through_the_gateway_are_counted_and_logged() {
    let dir = TempDir::new("demo");
    let registry = Proc::registry(&[]);
    let log = Proc::host(
        &plugin("log"),
        &registry,
        &["--dir", dir.path().to_str().unwrap()],
    );
    let visit = Proc::host(&plugin("visit"), &registry, &[]);
    let gateway = Proc::host(&plugin("gateway"), &registry, &[]);
    assert!(poll_until(SETTLE, || registered(&registry, "visit").len()
        == 1
        && registered(&registry, "log").len() == 1
        && registered(&registry, "gateway").len() == 1));

    for expected in 1..=3 {
        let reply = get(&gateway.url("/visit/"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), expected.to_string());
    }

    let lines = std::fs::read_to_string(dir.path().join("services.log")).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, count) in lines.iter().zip(1..) {
        assert!(line.ends_with(&format!(" visit: {count}")), "{line}");
    }
    drop((log, visit));
}

#[test]
fn a_service_started_after_its_dependent_is_found_through_notification() {
    let dir = TempDir::new("late");
    let registry = Proc::registry(&[]);
    let visit = Proc::host(&plugin("visit"), &registry, &[]);

    let before = get(&visit.url("/"));
    assert_eq!(before.status, 500, "{}", before.text());
    assert!(
        before.text().contains("no instance of the log service"),
        "{}",
        before.text()
    );

    let _log = Proc::host(
        &plugin("log"),
        &registry,
        &["--dir", dir.path().to_str().unwrap()],
    );
    // Only the registry's notification can tell visit where log is.
    assert!(
        poll_until(SETTLE, || get(&visit.url("/")).status == 200),
        "visit never found the log service:\n{}",
        visit.log()
    );
}

#[test]
fn a_stopped_host_leaves_the_registry_and_its_dependents_caches() {
    let dir = TempDir::new("stop");
    let registry = Proc::registry(&[]);
    let mut log = Proc::host(
        &plugin("log"),
        &registry,
        &["--dir", dir.path().to_str().unwrap()],
    );
    let visit = Proc::host(&plugin("visit"), &registry, &[]);
    assert!(poll_until(SETTLE, || get(&visit.url("/")).status == 200));

    let status = log.terminate(SETTLE).expect("log host exits on SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(log.log().contains("deregistered"), "{}", log.log());
    assert!(registered(&registry, "log").is_empty());

    // The registry's DELETE notification empties visit's cache: no attempt
    // to reach the stopped instance is made at all.
    assert!(poll_until(SETTLE, || {
        let reply = get(&visit.url("/"));
        reply.status == 500 && reply.text().contains("no instance of the log service")
    }));
}

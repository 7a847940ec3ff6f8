//! Tracing across hops: a request through gateway -> visit -> log carries
//! one W3C trace id, made at the first hop when the client sent none, and
//! every host's log lines about it carry that id.

use std::time::Duration;

use harness::{Proc, ServiceSpec, TempDir, get, plugin, poll_until, registered, send, stub};

const SETTLE: Duration = Duration::from_secs(30);
const GIVEN_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const GIVEN_PARENT: &str = "00f067aa0ba902b7";

/// The trace id of the first log line holding `needle`.
fn trace_id_of(log: &str, needle: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains(needle))?;
    let at = line.find("trace_id=")? + "trace_id=".len();
    Some(
        line[at..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect(),
    )
}

/// `GET url` as part of the trace [`GIVEN_TRACE`].
fn get_in_given_trace(url: &str) -> harness::Reply {
    let traceparent = format!("00-{GIVEN_TRACE}-{GIVEN_PARENT}-01");
    send("GET", url, &[("traceparent", &traceparent)], b"").unwrap()
}

/// Lines of `log` holding `trace_id=ID`.
fn lines_with(log: &str, id: &str) -> Vec<String> {
    let field = format!("trace_id={id}");
    log.lines()
        .filter(|l| l.contains(&field))
        .map(str::to_owned)
        .collect()
}

#[test]
fn one_trace_id_shows_a_request_in_the_three_hosts_logs() {
    let dir = TempDir::new("trace");
    let registry = Proc::registry(&[]);
    let log = Proc::host(
        &plugin("log"),
        &registry,
        &["--dir", dir.path().to_str().unwrap(), "--access-log"],
    );
    let visit = Proc::host(&plugin("visit"), &registry, &["--access-log"]);
    let gateway = Proc::host(&plugin("gateway"), &registry, &["--access-log"]);
    assert!(poll_until(SETTLE, || {
        ["log", "visit", "gateway"]
            .iter()
            .all(|s| registered(&registry, s).len() == 1)
    }));
    // Visit learns of log at registration or by notification.
    assert!(poll_until(SETTLE, || get(&visit.url("/")).status == 200));

    // No traceparent: the gateway starts the trace.
    let reply = get(&gateway.url("/visit/"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        gateway.wait_for_log("uri=/visit/", SETTLE),
        "{}",
        gateway.log()
    );
    let id = trace_id_of(&gateway.log(), "uri=/visit/").expect("the access line has a trace id");
    assert_eq!(id.len(), 32, "{id}");
    assert_ne!(id, "0".repeat(32));
    for host in [&gateway, &visit, &log] {
        assert!(
            poll_until(SETTLE, || lines_with(&host.log(), &id).len() == 1),
            "{} has no line (or several) with trace id {id}:\n{}",
            host.name(),
            host.log()
        );
    }
    // The direct request to visit above had a trace of its own.
    assert_ne!(
        trace_id_of(&visit.log(), "uri=/ ").as_deref(),
        Some(id.as_str())
    );

    // With a traceparent: its trace id is kept at every hop.
    let reply = get_in_given_trace(&gateway.url("/visit/"));
    assert_eq!(reply.status, 200);
    for host in [&gateway, &visit, &log] {
        assert!(
            poll_until(SETTLE, || lines_with(&host.log(), GIVEN_TRACE).len() == 1),
            "{} did not keep the given trace id:\n{}",
            host.name(),
            host.log()
        );
    }
}

/// Within one host process (`--config`), calls between services go in
/// process and carry the trace as over HTTP: the one log holds the same
/// trace id on each service's line about the request.
#[test]
fn one_trace_id_shows_a_request_in_each_service_of_one_process() {
    let dir = TempDir::new("trace-one-process");
    let registry = Proc::registry(&[]);
    let services = [
        ServiceSpec::new(&plugin("log"))
            .option("dir", dir.path().to_str().unwrap())
            .switch("access-log"),
        ServiceSpec::new(&plugin("visit")).switch("access-log"),
        ServiceSpec::new(&plugin("gateway")).switch("access-log"),
    ];
    let config = dir.path().join("services.toml");
    let host = Proc::multi_host(&config, &services, &registry, &[]);
    let gateway = &services[2];
    assert!(poll_until(SETTLE, || get(&gateway.url("/visit/")).status == 200));

    let reply = get_in_given_trace(&gateway.url("/visit/"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answered = || {
        lines_with(&host.log(), GIVEN_TRACE)
            .into_iter()
            .filter(|line| line.contains("answered"))
            .collect::<Vec<_>>()
    };
    assert!(
        poll_until(SETTLE, || answered().len() == 3),
        "not one access line per service with the trace id:\n{}",
        host.log()
    );
    // The gateway forwards the whole path: visit sees `/visit/` too.
    for (service, uri) in [
        ("gateway", "/visit/"),
        ("visit", "/visit/"),
        ("log", "/log"),
    ] {
        let access = format!("service=\"{service}\" method=");
        assert!(
            answered()
                .iter()
                .any(|line| line.contains(&access) && line.contains(&format!("uri={uri} "))),
            "no line of {service} for {uri}:\n{:#?}",
            answered()
        );
    }
}

#[test]
fn the_plugin_sees_a_child_traceparent_and_failure_lines_carry_the_trace_id() {
    let registry = Proc::registry(&[]);
    let host = Proc::host(&stub("echo"), &registry, &[]);
    let traceparent = format!("00-{GIVEN_TRACE}-{GIVEN_PARENT}-01");
    let reply = send(
        "GET",
        &host.url("/headers"),
        &[("traceparent", &traceparent), ("tracestate", "vendor=1")],
        b"",
    )
    .unwrap();
    let seen = reply.text();
    let line = seen
        .lines()
        .find(|l| l.starts_with("traceparent: "))
        .unwrap_or_else(|| panic!("the plugin saw no traceparent:\n{seen}"));
    let value = &line["traceparent: ".len()..];
    assert_eq!(value.len(), 55, "{value}");
    assert!(value.starts_with(&format!("00-{GIVEN_TRACE}-")), "{value}");
    assert_ne!(
        &value[36..52],
        GIVEN_PARENT,
        "this hop needs a span id of its own"
    );
    assert!(seen.contains("tracestate: vendor=1"), "{seen}");
    assert_eq!(seen.matches("traceparent").count(), 1, "{seen}");

    // No --access-log: the lines about a failed request carry the id all
    // the same (the host's own and the plugin's stderr).
    let reply = send(
        "GET",
        &host.url("/trap"),
        &[("traceparent", &traceparent)],
        b"",
    )
    .unwrap();
    assert_eq!(reply.status, 500);
    assert!(
        host.wait_for_log("plugin trapped", SETTLE),
        "{}",
        host.log()
    );
    let lines = lines_with(&host.log(), GIVEN_TRACE);
    assert!(
        lines.iter().any(|l| l.contains("plugin trapped")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("stub trap requested")),
        "{lines:#?}"
    );
}

//! Metrics: after known traffic, every process's `/metrics` parses as the
//! Prometheus text format and its counters hold the values that traffic
//! must have produced (not just their names).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use prometheus_parse::{LineInfo, Scrape, Value};

use harness::etcd::{EtcdCluster, host_of, leader_of, registry_replica};
use harness::{
    Deadline, NO_HEARTBEAT, Proc, TempDir, free_addr, get, install_atomically, plugin, poll_until,
    post, registered, send, stub,
};

const SETTLE: Duration = Duration::from_secs(30);

/// One scrape, checked line by line and parsed.
struct Metrics(Scrape);

impl Metrics {
    fn of(addr: SocketAddr) -> Metrics {
        let reply = get(&format!("http://{addr}/metrics"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        let content_type = reply.headers["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = reply.text();
        // The parser skips what it does not understand: make sure nothing
        // was skipped.
        for line in text.lines() {
            assert!(
                !matches!(LineInfo::parse(line), LineInfo::Ignored),
                "not the Prometheus text format: {line:?}"
            );
        }
        Metrics(Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses"))
    }

    /// The value of the counter, gauge (or histogram `_count`) sample `name`
    /// with exactly `labels`; `None` when there is no such sample.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name && s.labels.len() == labels.len())
            .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                ref other => panic!("{name} is not a single value: {other:?}"),
            })
    }

    /// Like [`Metrics::get`], for a sample that must be there.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {:#?}", self.names()))
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.samples.iter().map(|s| s.metric.clone()).collect();
        names.dedup();
        names
    }
}

/// A host of `plugin` serving its metrics on a port of its own, and where.
fn host_with_metrics(plugin: &Path, registry: &Proc, extra: &[&str]) -> (Proc, SocketAddr) {
    let args = [&["--metrics-addr", "127.0.0.1:0"][..], extra].concat();
    let host = Proc::host(plugin, registry, &args);
    let addr = metrics_addr(&host);
    (host, addr)
}

/// Closes `stream` with a reset, as a client that gives up does.
fn hang_up(stream: std::net::TcpStream) {
    let reset = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &reset).unwrap();
}

/// One label of a sample: name and value.
type Label = (&'static str, &'static str);

/// `more` labels, with the `service` one first.
fn of_service(service: &'static str, more: &[Label]) -> Vec<Label> {
    [&[("service", service)][..], more].concat()
}

/// The metrics address a host logged.
fn metrics_addr(host: &Proc) -> SocketAddr {
    harness::listening::parse_metrics(&host.log())
        .unwrap_or_else(|| panic!("no `metrics on` line:\n{}", host.log()))
}

#[test]
fn a_host_counts_requests_failures_calls_state_and_swaps() {
    let dir = TempDir::new("metrics-host");
    let plugin_file = dir.path().join("echo.wasm");
    // Requires `echo`, whose only instance is itself: a call finds no
    // instance.
    std::fs::copy(stub("echo-calls-echo"), &plugin_file).unwrap();
    let registry = Proc::registry(&[]);
    let (host, addr) = host_with_metrics(
        &plugin_file,
        &registry,
        &["--request-timeout", "1s", "--max-body", "1KiB"],
    );
    let echo = |more: &[Label]| of_service("echo", more);
    let before = Metrics::of(addr);
    assert_eq!(
        before.value("sparrow_host_requests_total", &echo(&[("class", "2xx")])),
        0.0
    );

    for _ in 0..5 {
        assert_eq!(post(&host.url("/echo"), b"hi").status, 200);
    }
    assert_eq!(post(&host.url("/echo"), &[b'x'; 2048]).status, 413);
    assert_eq!(get(&host.url("/count")).text(), "1");
    assert_eq!(get(&host.url("/call/echo/x")).status, 502);
    assert_eq!(get(&host.url("/call/log/x")).status, 502);
    assert_eq!(get(&host.url("/trap")).status, 500);
    assert_eq!(get(&host.url("/loop")).status, 504);

    // A refused swap, then a done one.
    std::fs::write(dir.path().join("garbage"), "not wasm").unwrap();
    install_atomically(&dir.path().join("garbage"), &plugin_file);
    assert!(
        host.wait_for_log("new plugin refused", SETTLE),
        "{}",
        host.log()
    );
    install_atomically(&stub("echo-v2"), &plugin_file);
    assert!(
        host.wait_for_log("plugin swapped", SETTLE),
        "{}",
        host.log()
    );
    assert_eq!(get(&host.url("/version")).text(), "v2");

    let m = Metrics::of(addr);
    let requests = |class| m.value("sparrow_host_requests_total", &echo(&[("class", class)]));
    // 200: 5 echoes, /count, /version; 5xx: two 502 from the plugin, the
    // trap's 500, the loop's 504; 4xx: the body over --max-body.
    assert_eq!(requests("2xx"), 7.0);
    assert_eq!(requests("4xx"), 1.0);
    assert_eq!(requests("5xx"), 4.0);
    assert_eq!(requests("1xx") + requests("3xx"), 0.0);
    assert_eq!(
        m.value("sparrow_host_request_duration_seconds_count", &echo(&[])),
        12.0
    );
    // Every request but the 413 ran in a fresh instance.
    assert_eq!(
        m.value("sparrow_host_instance_setup_seconds_count", &echo(&[])),
        11.0
    );
    let failures = |kind| {
        m.value(
            "sparrow_host_plugin_failures_total",
            &echo(&[("kind", kind)]),
        )
    };
    assert_eq!(
        [
            failures("trap"),
            failures("timeout"),
            failures("busy"),
            failures("setup")
        ],
        [1.0, 1.0, 0.0, 0.0]
    );
    assert_eq!(m.value("sparrow_host_instances_in_use", &echo(&[])), 0.0);
    let swaps = |result| m.value("sparrow_host_swaps_total", &echo(&[("result", result)]));
    assert_eq!([swaps("done"), swaps("refused")], [1.0, 1.0]);
    let calls = |target, outcome| {
        m.value(
            "sparrow_host_outbound_calls_total",
            &echo(&[("target", target), ("outcome", outcome)]),
        )
    };
    assert_eq!(calls("echo", "no_instance"), 1.0);
    assert_eq!(calls("echo", "answered"), 0.0);
    // A name the plugin may not call takes no place of its own.
    assert_eq!(calls("_other", "not_allowed"), 1.0);
    let state = |op| m.value("sparrow_host_state_operations_total", &echo(&[("op", op)]));
    assert_eq!(
        [state("increment"), state("get"), state("set")],
        [1.0, 0.0, 0.0]
    );

    // The swap changed the description (no requirement any more): the
    // registry saw one new registration and one update.
    let r = Metrics::of(registry.addr());
    let registrations = |kind| r.value("sparrow_registry_registrations_total", &[("kind", kind)]);
    assert_eq!([registrations("new"), registrations("update")], [1.0, 1.0]);
}

/// The gateway calls whatever service a client names: past
/// `--metrics-max-targets` names the calls count as `_other`, and a hot swap
/// (a new version of the service) does not make room for more. The services
/// are registered, at an address where nothing listens: names that reach no
/// instance take no place at all (`a_made_up_name_takes_no_place...`).
#[test]
fn the_bound_on_call_targets_holds_across_hot_swaps() {
    const MAX_TARGETS: usize = 4;
    let dir = TempDir::new("metrics-targets");
    let plugin_file = dir.path().join("gateway.wasm");
    std::fs::copy(plugin("gateway"), &plugin_file).unwrap();
    // No heartbeat: the instances are addresses where nothing listens.
    let registry = Proc::registry(NO_HEARTBEAT);
    let nobody = free_addr().unwrap().to_string();
    let (host, addr) = host_with_metrics(
        &plugin_file,
        &registry,
        &["--metrics-max-targets", &MAX_TARGETS.to_string()],
    );
    let gateway = std::fs::read(plugin("gateway")).unwrap();
    let swaps_done = || {
        Metrics::of(addr).get(
            "sparrow_host_swaps_total",
            &[("service", "gateway"), ("result", "done")],
        )
    };
    for version in 0..3 {
        if version > 0 {
            // The same gateway, byte-different: a version of its own.
            let next = dir.path().join(format!("gateway-{version}.wasm"));
            std::fs::write(&next, with_custom_section(&gateway, &version.to_string())).unwrap();
            install_atomically(&next, &plugin_file);
            assert!(
                poll_until(SETTLE, || swaps_done() == Some(f64::from(version))),
                "{}",
                host.log()
            );
        }
        for n in 0..2 * MAX_TARGETS {
            let name = format!("v{version}-{n}");
            let record = format!(r#"{{"Name":"{name}","Addr":"{nobody}","RequiredServices":[]}}"#);
            assert_eq!(
                post(&registry.url("/services"), record.as_bytes()).status,
                200
            );
            let added = format!("instance added name={name} ");
            assert!(
                poll_until(SETTLE, || host.log().contains(&added)),
                "{}",
                host.log()
            );
            let reply = get(&host.url(&format!("/{name}/")));
            assert_eq!(reply.status, 502, "{}", reply.text());
        }
    }

    let m = Metrics::of(addr);
    let mut targets: Vec<&str> =
        m.0.samples
            .iter()
            .filter(|s| s.metric == "sparrow_host_outbound_calls_total")
            .filter(|s| s.labels.get("service") == Some("gateway"))
            .filter_map(|s| s.labels.get("target"))
            .collect();
    targets.sort_unstable();
    targets.dedup();
    assert_eq!(targets.len(), MAX_TARGETS + 1, "{targets:?}");
    assert!(targets.contains(&"_other"), "{targets:?}");
    // Every call is counted, by name or as `_other`.
    let calls: f64 = targets
        .iter()
        .map(|target| {
            m.value(
                "sparrow_host_outbound_calls_total",
                &[
                    ("service", "gateway"),
                    ("target", target),
                    ("outcome", "unreachable"),
                ],
            )
        })
        .sum();
    assert_eq!(calls, (3 * 2 * MAX_TARGETS) as f64);
}

/// A name a client makes up reaches no instance: its calls count as
/// `_other`, and take no place from the services that come later (an audit
/// filled every place with made-up names).
#[test]
fn a_made_up_name_takes_no_place_from_a_real_service() {
    let registry = Proc::registry(&[]);
    let (gateway, addr) = host_with_metrics(
        &plugin("gateway"),
        &registry,
        &["--metrics-max-targets", "2"],
    );
    for n in 0..5 {
        let reply = get(&gateway.url(&format!("/made-up-{n}/")));
        assert_eq!(reply.status, 503, "{}", reply.text());
    }
    let _echo = Proc::host(&stub("plain-echo"), &registry, &["--name", "echo"]);
    let url = gateway.url("/echo/");
    assert!(
        poll_until(SETTLE, || get(&url).status == 200),
        "{}",
        gateway.log()
    );
    let m = Metrics::of(addr);
    let calls = |target: &str, outcome: &str| {
        m.get(
            "sparrow_host_outbound_calls_total",
            &[
                ("service", "gateway"),
                ("target", target),
                ("outcome", outcome),
            ],
        )
    };
    assert!(calls("echo", "answered") >= Some(1.0), "{:?}", m.0.samples);
    assert!(
        calls("_other", "no_instance") >= Some(5.0),
        "{:?}",
        m.0.samples
    );
    assert_eq!(calls("made-up-0", "no_instance"), None);
}

/// `component` with a custom section named `sparrow-test` holding `data`
/// appended: a component that runs the same, in other bytes.
fn with_custom_section(component: &[u8], data: &str) -> Vec<u8> {
    let name = "sparrow-test";
    let mut payload = vec![u8::try_from(name.len()).unwrap()];
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data.as_bytes());
    let mut bytes = component.to_vec();
    bytes.push(0);
    bytes.push(u8::try_from(payload.len()).expect("a one-byte LEB128 size"));
    bytes.extend_from_slice(&payload);
    bytes
}

/// A request whose client leaves before the answer (here with a reset)
/// still runs, and is counted and access-logged like any other: nothing of
/// it may vanish from what the host shows, and a remote callee whose
/// caller gave up runs on to its own timeout as one in process does.
#[test]
fn a_request_its_client_left_is_still_counted_and_logged() {
    use std::io::Write;
    let registry = Proc::registry(&[]);
    let (host, addr) = host_with_metrics(&stub("echo"), &registry, &["--access-log"]);
    let answered = || {
        Metrics::of(addr).value(
            "sparrow_host_requests_total",
            &[("service", "echo"), ("class", "2xx")],
        )
    };
    assert_eq!(answered(), 0.0);
    let mut stream = std::net::TcpStream::connect(host.addr()).unwrap();
    stream
        .write_all(b"GET /sleep?ms=1000 HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    // The instance is running once its slot is taken...
    assert!(poll_until(Duration::from_secs(10), || {
        Metrics::of(addr).value("sparrow_host_instances_in_use", &[("service", "echo")]) == 1.0
    }));
    // ...when the client leaves.
    hang_up(stream);
    assert!(
        poll_until(Duration::from_secs(10), || answered() == 1.0),
        "{}",
        host.log()
    );
    assert!(
        host.log().contains("uri=/sleep?ms=1000 status=200"),
        "{}",
        host.log()
    );
}

/// A client that leaves while it sends its body: its broken request is
/// counted and access-logged as a 400 (as nginx logs a body the client
/// closed), no plugin runs for it, and it is not the plugin's failure.
#[test]
fn a_client_that_leaves_while_sending_its_body_is_counted_and_runs_no_plugin() {
    use std::io::{Read, Write};
    let registry = Proc::registry(&[]);
    let (host, addr) = host_with_metrics(&stub("echo"), &registry, &["--access-log"]);
    let count = |class| {
        Metrics::of(addr).value(
            "sparrow_host_requests_total",
            &[("service", "echo"), ("class", class)],
        )
    };
    assert_eq!(count("4xx"), 0.0);
    let mut stream = std::net::TcpStream::connect(host.addr()).unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: h\r\ncontent-length: 1000\r\nexpect: 100-continue\r\n\r\n")
        .unwrap();
    // The host asks for the body once it reads it: then the client leaves
    // with part of it sent.
    let mut continued = [0u8; 25];
    stream.read_exact(&mut continued).unwrap();
    assert!(
        continued.starts_with(b"HTTP/1.1 100 Continue"),
        "{continued:?}"
    );
    stream.write_all(b"part").unwrap();
    hang_up(stream);
    assert!(
        poll_until(Duration::from_secs(10), || count("4xx") > 0.0),
        "{}",
        host.log()
    );
    assert_eq!(count("4xx"), 1.0, "{}", host.log());
    assert_eq!(count("2xx"), 0.0);
    assert!(
        host.log().contains("uri=/echo status=400"),
        "{}",
        host.log()
    );
    let m = Metrics::of(addr);
    assert_eq!(
        m.value(
            "sparrow_host_instance_setup_seconds_count",
            &[("service", "echo")]
        ),
        0.0,
        "a plugin ran"
    );
    let failures: f64 = ["trap", "timeout", "busy", "setup"]
        .iter()
        .map(|kind| {
            m.get(
                "sparrow_host_plugin_failures_total",
                &[("service", "echo"), ("kind", kind)],
            )
            .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(failures, 0.0);
}

#[test]
fn without_metrics_addr_nothing_is_served_and_metrics_is_the_plugins_path() {
    let registry = Proc::registry(&[]);
    let host = Proc::host(&stub("echo"), &registry, &[]);
    assert!(harness::listening::parse_metrics(&host.log()).is_none());
    let reply = get(&host.url("/metrics"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["x-echo-path"], "/metrics");
}

#[test]
fn the_system_and_the_registry_count_visits_heartbeats_evictions_and_notifications() {
    let dir = TempDir::new("metrics-system");
    let registry = Proc::registry(&[]);
    let with_metrics = ["--metrics-addr", "127.0.0.1:0"];
    // One at a time, so that which registration notifies whom is known:
    // nobody requires a service when it registers, so none does.
    let mut log = Proc::host(
        &plugin("log"),
        &registry,
        &[
            "--dir",
            dir.path().to_str().unwrap(),
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    assert!(poll_until(SETTLE, || registered(&registry, "log").len() == 1));
    let mut visit = Proc::host(&plugin("visit"), &registry, &with_metrics);
    assert!(poll_until(SETTLE, || registered(&registry, "visit").len() == 1));
    let gateway = Proc::host(&plugin("gateway"), &registry, &with_metrics);
    assert!(poll_until(SETTLE, || registered(&registry, "gateway")
        .len()
        == 1));

    for expected in 1..=3 {
        let reply = get(&gateway.url("/visit/"));
        assert_eq!(reply.text(), expected.to_string());
    }

    let g = Metrics::of(metrics_addr(&gateway));
    let gw = |more: &[Label]| of_service("gateway", more);
    assert_eq!(
        g.value("sparrow_host_requests_total", &gw(&[("class", "2xx")])),
        3.0
    );
    assert_eq!(
        g.value(
            "sparrow_host_outbound_calls_total",
            &gw(&[("target", "visit"), ("outcome", "answered")])
        ),
        3.0
    );
    let v = Metrics::of(metrics_addr(&visit));
    let vi = |more: &[Label]| of_service("visit", more);
    assert_eq!(
        v.value("sparrow_host_requests_total", &vi(&[("class", "2xx")])),
        3.0
    );
    assert_eq!(
        v.value("sparrow_host_log_lines_total", &vi(&[("result", "sent")])),
        3.0
    );
    assert_eq!(
        v.value("sparrow_host_log_lines_total", &vi(&[("result", "failed")])),
        0.0
    );
    assert_eq!(
        v.value(
            "sparrow_host_outbound_calls_total",
            &vi(&[("target", "log"), ("outcome", "answered")])
        ),
        3.0
    );
    assert_eq!(
        v.value(
            "sparrow_host_state_operations_total",
            &vi(&[("op", "increment")])
        ),
        3.0
    );
    let l = Metrics::of(metrics_addr(&log));
    assert_eq!(
        l.value(
            "sparrow_host_requests_total",
            &[("service", "log"), ("class", "2xx")]
        ),
        3.0
    );
    let appends = |result| {
        l.value(
            "sparrow_host_file_appends_total",
            &[("service", "log"), ("result", result)],
        )
    };
    assert_eq!([appends("written"), appends("failed")], [3.0, 0.0]);

    // The registry: three new registrations, all passing once heartbeats
    // came, nothing failed or notified yet.
    let passing = |m: &Metrics, service| {
        m.get(
            "sparrow_registry_instances",
            &[("service", service), ("health", "passing")],
        )
    };
    assert!(poll_until(SETTLE, || {
        let r = Metrics::of(registry.addr());
        ["log", "visit", "gateway"]
            .iter()
            .all(|s| passing(&r, s) == Some(1.0))
    }));
    let r = Metrics::of(registry.addr());
    assert_eq!(
        r.value("sparrow_registry_registrations_total", &[("kind", "new")]),
        3.0
    );
    assert_eq!(r.value("sparrow_registry_table_instances", &[]), 3.0);
    assert_eq!(r.value("sparrow_registry_services", &[]), 3.0);
    assert!(r.value("sparrow_registry_heartbeats_total", &[("result", "ok")]) >= 3.0);
    assert_eq!(
        r.value("sparrow_registry_heartbeats_total", &[("result", "failed")]),
        0.0
    );
    let delivered = |m: &Metrics| {
        m.value(
            "sparrow_registry_notifications_total",
            &[("result", "delivered")],
        )
    };
    assert_eq!(delivered(&r), 0.0);

    // kill -9 the log host: two failed attempts (the test registry's
    // --heartbeat-attempts), one eviction, visit and gateway told.
    log.kill9();
    assert!(
        poll_until(SETTLE, || {
            let r = Metrics::of(registry.addr());
            r.value("sparrow_registry_evictions_total", &[]) == 1.0 && delivered(&r) == 2.0
        }),
        "{}",
        registry.log()
    );
    let r = Metrics::of(registry.addr());
    assert_eq!(
        r.value("sparrow_registry_heartbeats_total", &[("result", "failed")]),
        2.0
    );
    assert_eq!(passing(&r, "log"), None);
    assert_eq!(r.value("sparrow_registry_table_instances", &[]), 2.0);
    assert_eq!(
        r.value("sparrow_registry_notification_latency_seconds_count", &[]),
        2.0
    );
    assert_eq!(
        r.value(
            "sparrow_registry_notifications_total",
            &[("result", "failed")]
        ),
        0.0
    );

    // A clean stop deregisters: the gateway is told.
    let status = visit.terminate(SETTLE).expect("visit exits");
    assert!(status.success());
    assert!(poll_until(SETTLE, || delivered(&Metrics::of(
        registry.addr()
    )) == 3.0));
    let r = Metrics::of(registry.addr());
    assert_eq!(
        r.value(
            "sparrow_registry_deregistrations_total",
            &[("result", "removed")]
        ),
        1.0
    );
    // A deregistration of an unknown instance is counted apart.
    let unknown = br#"{"Name":"ghost","Addr":"127.0.0.1:9","RequiredServices":[]}"#;
    assert_eq!(
        send("DELETE", &registry.url("/services"), &[], unknown)
            .unwrap()
            .status,
        200
    );
    let r = Metrics::of(registry.addr());
    assert_eq!(
        r.value(
            "sparrow_registry_deregistrations_total",
            &[("result", "unknown")]
        ),
        1.0
    );
}

#[test]
fn registry_replicas_on_etcd_time_their_round_trips_and_show_who_leads() {
    let etcd = EtcdCluster::start(1);
    let addrs: Vec<String> = (0..2).map(|_| free_addr().unwrap().to_string()).collect();
    let mut replicas: Vec<Proc> = addrs
        .iter()
        .map(|addr| registry_replica(&etcd, addr, &[]))
        .collect();
    let leader = Deadline::after(SETTLE)
        .poll(|| leader_of(&replicas.iter().collect::<Vec<_>>()))
        .expect("a replica leads");
    let other = 1 - leader;
    let leads = |replica: &Proc| {
        Metrics::of(replica.addr()).value("sparrow_registry_backend_leader", &[("backend", "etcd")])
    };
    assert_eq!(leads(&replicas[leader]), 1.0);
    assert_eq!(leads(&replicas[other]), 0.0);

    // A registration on the follower is one etcd transaction, timed there.
    let host = host_of(&plugin("visit"), &[&replicas[other]], &[]);
    assert!(poll_until(SETTLE, || registered(&replicas[other], "visit")
        .len()
        == 1));
    let round_trips = |replica: &Proc, op| {
        Metrics::of(replica.addr()).get(
            "sparrow_registry_backend_round_trip_seconds_count",
            &[("backend", "etcd"), ("op", op)],
        )
    };
    assert!(round_trips(&replicas[other], "txn") >= Some(1.0));
    // Both read the table once and watch it.
    for replica in &replicas {
        assert!(round_trips(replica, "range") >= Some(1.0));
        assert!(round_trips(replica, "watch") >= Some(1.0));
    }
    drop(host);

    // The leader stops (and resigns): the other takes over, and counts it.
    let status = replicas[leader]
        .terminate(SETTLE)
        .expect("the leader exits");
    assert!(status.success());
    assert!(
        poll_until(SETTLE, || leads(&replicas[other]) == 1.0),
        "{}",
        replicas[other].log()
    );
    assert_eq!(
        Metrics::of(replicas[other].addr()).value(
            "sparrow_registry_backend_leader_changes_total",
            &[("backend", "etcd")]
        ),
        1.0
    );
}

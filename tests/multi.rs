//! Several services in one host process (`host --config`), against the same
//! services each in a process of its own: the same answers, headers, log
//! lines and failures either way; a local callee that traps, spins or is
//! swapped costs its own request only; a chain of calls that loops stops at
//! the same hop; services of a multi-service host reach, and are reached
//! by, other processes through the registry.

use std::path::Path;
use std::time::Duration;

use harness::{
    Proc, ServiceSpec, TempDir, get, install_atomically, plugin, poll_until, send, stub,
};

const SETTLE: Duration = Duration::from_secs(20);

/// How the services of a test are spread over processes.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// One host process runs them all, from a config file.
    OneProcess,
    /// One host process each, as flags.
    ProcessEach,
}

/// `services` running in `layout` (in the order given: dependencies first),
/// registered with `registry`; `extra` are host-wide flags for every host.
fn start(
    layout: Layout,
    services: &[ServiceSpec],
    registry: &Proc,
    config_dir: &TempDir,
    extra: &[&str],
) -> Vec<Proc> {
    match layout {
        Layout::OneProcess => {
            let config = config_dir.path().join("services.toml");
            vec![Proc::multi_host(&config, services, registry, extra)]
        }
        Layout::ProcessEach => services
            .iter()
            .map(|service| Proc::service_host(service, registry, extra))
            .collect(),
    }
}

/// `text` with each service's address replaced by its name, so that what
/// two runs on other ports observed can be compared.
fn named(text: &str, services: &[(&str, &ServiceSpec)]) -> String {
    services.iter().fold(text.to_owned(), |text, (name, spec)| {
        text.replace(&spec.addr, &name.to_uppercase())
    })
}

/// What one run of the gateway -> visit -> log scenario answered, as lines
/// to compare between layouts.
fn gateway_visit_log(layout: Layout) -> Vec<String> {
    let dir = TempDir::new("multi-system");
    let registry = Proc::registry(&[]);
    let log = ServiceSpec::new(&plugin("log")).option("dir", dir.path().to_str().unwrap());
    let visit = ServiceSpec::new(&plugin("visit"));
    let echo = ServiceSpec::new(&stub("echo")).option("request-timeout", "5s");
    let gateway = ServiceSpec::new(&plugin("gateway")).option("call-timeout", "1s");
    let services = [log.clone(), visit.clone(), echo.clone(), gateway.clone()];
    let _hosts = start(layout, &services, &registry, &dir, &[]);
    let names = [
        ("log", &log),
        ("visit", &visit),
        ("echo", &echo),
        ("gateway", &gateway),
    ];
    let mut seen = Vec::new();

    // Every service must know the others before the scenario starts.
    assert!(poll_until(SETTLE, || get(&gateway.url("/echo/")).status == 200));
    for expected in 1..=3 {
        let reply = get(&gateway.url("/visit/"));
        assert_eq!(reply.status, 200, "{layout:?}: {}", reply.text());
        assert_eq!(reply.text(), expected.to_string(), "{layout:?}");
        seen.push(format!("visit: {} {}", reply.status, reply.text()));
    }
    let lines = std::fs::read_to_string(dir.path().join("services.log")).unwrap();
    for line in lines.lines() {
        // Without the timestamp.
        let (_, rest) = line.split_once(' ').unwrap();
        seen.push(format!("log line: {rest}"));
    }

    // What the callee sees of a request, and what comes back.
    let headers = [
        ("connection", "x-secret"),
        ("x-secret", "1"),
        ("x-sparrow-client-addr", "10.9.9.9:1"),
        ("x-log-source", "someone-else"),
        ("x-test-kept", "yes"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ];
    for (method, body) in [("GET", ""), ("POST", "hello")] {
        let url = gateway.url("/echo/headers?q=1");
        let reply = send(method, &url, &headers, body.as_bytes()).unwrap();
        assert_eq!(reply.status, 200, "{layout:?}: {}", reply.text());
        let text = reply.text();
        let client = text
            .lines()
            .find_map(|l| l.strip_prefix("x-sparrow-client-addr: "))
            .unwrap_or_else(|| panic!("{layout:?}: no client address:\n{text}"));
        match layout {
            // In process, the client is the calling service itself.
            Layout::OneProcess => assert_eq!(client, gateway.addr, "{text}"),
            Layout::ProcessEach => assert!(client.starts_with("127.0.0.1:"), "{text}"),
        }
        assert!(!text.contains("x-secret"), "{layout:?}: {text}");
        assert!(
            text.contains("x-log-source: gateway\n"),
            "{layout:?}: {text}"
        );
        assert!(
            text.contains("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{layout:?}: {text}"
        );
        let mut lines: Vec<String> = named(&text, &names)
            .lines()
            .map(|line| match line.split_once(": ") {
                // The client's port, and the span id of the hop, vary.
                Some(("x-sparrow-client-addr", _)) => "x-sparrow-client-addr: (set)".into(),
                Some(("traceparent", value)) => format!("traceparent: {}", &value[..36]),
                _ => line.to_owned(),
            })
            .collect();
        lines.sort();
        seen.push(format!("{method} headers seen: {lines:?}"));
        let mut answered: Vec<&str> = reply
            .headers
            .keys()
            .map(|name| name.as_str())
            .filter(|name| *name != "date")
            .collect();
        answered.sort();
        seen.push(format!("{method} headers answered: {answered:?}"));
    }

    // Failures: a trap, a callee past the gateway's call timeout, no such
    // service, a call back into the gateway itself.
    for path in ["/echo/trap", "/echo/loop", "/nothing/", "/gateway/echo/"] {
        let reply = get(&gateway.url(path));
        seen.push(format!(
            "{path}: {} {}",
            reply.status,
            named(reply.text().trim(), &names)
        ));
    }
    seen
}

#[test]
fn gateway_visit_log_answer_the_same_in_one_process_as_in_four() {
    let one = gateway_visit_log(Layout::OneProcess);
    let each = gateway_visit_log(Layout::ProcessEach);
    assert_eq!(one, each);
    let find = |prefix: &str| {
        one.iter()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}: {one:#?}"))
            .clone()
    };
    assert!(find("log line").ends_with("visit: 1"), "{one:#?}");
    assert!(
        find("/echo/trap").starts_with("/echo/trap: 500"),
        "{one:#?}"
    );
    assert!(
        find("/echo/loop").starts_with("/echo/loop: 504"),
        "{one:#?}"
    );
    assert!(find("/nothing/").starts_with("/nothing/: 503"), "{one:#?}");
    // A service's call to its own name is not taken by itself, in process
    // or not: the registry does not announce a service to itself.
    assert!(
        find("/gateway/").starts_with("/gateway/echo/: 503"),
        "{one:#?}"
    );
}

/// A caller and a callee (the echo stub, from a file that may be swapped):
/// what the caller answered while the callee traps, spins past the
/// caller's call timeout and is swapped under a call.
fn failing_callee(layout: Layout) -> Vec<String> {
    let dir = TempDir::new("multi-callee");
    let callee_file = dir.path().join("callee.wasm");
    std::fs::copy(stub("echo"), &callee_file).unwrap();
    let registry = Proc::registry(&[]);
    // The call timeout outlasts a call swapped under (1.5 s); the callee's
    // request timeout outlasts the call timeout.
    let callee = ServiceSpec::new(&callee_file).option("request-timeout", "5s");
    let caller = ServiceSpec::new(&stub("echo-calls-echo"))
        .option("name", "caller")
        .option("call-timeout", "3s");
    let metrics = harness::free_addr().unwrap().to_string();
    let cache = dir.path().join("cache");
    let hosts_flags = ["--cache-dir", cache.to_str().unwrap()];
    let services = [callee.clone(), caller.clone()];
    let _hosts = match layout {
        Layout::OneProcess => {
            let flags = [&hosts_flags[..], &["--metrics-addr", &metrics]].concat();
            start(layout, &services, &registry, &dir, &flags)
        }
        Layout::ProcessEach => {
            let metered = [&hosts_flags[..], &["--metrics-addr", &metrics]].concat();
            vec![
                Proc::service_host(&callee, &registry, &metered),
                Proc::service_host(&caller, &registry, &hosts_flags),
            ]
        }
    };
    let call = |path: &str| get(&caller.url(&format!("/call/echo{path}")));
    assert!(poll_until(SETTLE, || call("/").status == 200));
    let mut seen = Vec::new();
    let mut note = |what: &str, reply: harness::Reply| {
        seen.push(format!("{what}: {} {}", reply.status, reply.text().trim()));
    };

    // Swapped under a call: the call in flight ends on the old version.
    let in_use = || {
        get(&format!("http://{metrics}/metrics"))
            .text()
            .contains("sparrow_host_instances_in_use{service=\"echo\"} 1")
    };
    let sleeper = {
        let url = caller.url("/call/echo/sleep?ms=1500");
        std::thread::spawn(move || get(&url))
    };
    assert!(
        poll_until(SETTLE, in_use),
        "the call never reached the callee"
    );
    install_atomically(&stub("echo-v2"), &callee_file);
    assert!(poll_until(SETTLE, || call("/version").text() == "v2"));
    note("swapped under a call", sleeper.join().unwrap());

    // Spinning past the caller's call timeout, while other calls go on.
    let spinner = {
        let url = caller.url("/call/echo/loop");
        std::thread::spawn(move || get(&url))
    };
    note(
        "beside a spin",
        send("POST", &caller.url("/call/echo/x"), &[], b"hi").unwrap(),
    );
    note("trap", call("/trap"));
    note("spin", spinner.join().unwrap());
    note("after", call("/version"));
    seen
}

#[test]
fn a_local_callee_that_fails_costs_its_request_only_as_a_remote_one_does() {
    let one = failing_callee(Layout::OneProcess);
    let each = failing_callee(Layout::ProcessEach);
    assert_eq!(one, each);
    assert_eq!(
        one,
        [
            "swapped under a call: 200 slept 1500 ms",
            "beside a spin: 200 hi",
            "trap: 500 service 'echo' failed on this request",
            "spin: 502 call failed: CallError::Timeout",
            "after: 200 v2",
        ]
    );
}

/// What `ping` answered to chains of calls between it and `pong`, two
/// echo stubs that require each other: one of twelve calls (past the
/// default bound of ten hops) and one of four.
fn call_chains(layout: Layout) -> Vec<String> {
    let dir = TempDir::new("multi-loop");
    let registry = Proc::registry(&[]);
    let peer = |name: &str, other: &str| {
        ServiceSpec::new(&stub("echo"))
            .option("name", name)
            .option("requires", other)
    };
    let (ping, pong) = (peer("ping", "pong"), peer("pong", "ping"));
    let _hosts = start(layout, &[ping.clone(), pong.clone()], &registry, &dir, &[]);
    // Across processes, each hears of the other from the registry.
    let chain = |calls: usize| {
        let path = format!("/{}end", "call/pong/call/ping/".repeat(calls / 2));
        get(&ping.url(&path))
    };
    assert!(poll_until(SETTLE, || chain(2).status == 200));
    [12, 4]
        .into_iter()
        .map(|calls| {
            let reply = chain(calls);
            let seen = format!("{calls} calls: {} {}", reply.status, reply.text());
            seen.trim().to_owned()
        })
        .collect()
}

#[test]
fn a_chain_of_calls_that_loops_is_stopped_in_one_process_as_across_processes() {
    let one = call_chains(Layout::OneProcess);
    let each = call_chains(Layout::ProcessEach);
    assert_eq!(one, each);
    assert_eq!(
        one,
        [
            "12 calls: 502 call failed: CallError::InvalidRequest(\"loop detected: the call would pass the limit of 10 hops (--max-hops)\")",
            "4 calls: 200",
        ]
    );
}

#[test]
fn services_of_a_multi_service_host_reach_and_are_reached_through_the_registry() {
    let dir = TempDir::new("multi-mixed");
    let registry = Proc::registry(&[]);
    // log runs alone; gateway and visit share a process.
    let log = ServiceSpec::new(&plugin("log")).option("dir", dir.path().to_str().unwrap());
    let _log = Proc::service_host(&log, &registry, &[]);
    let visit = ServiceSpec::new(&plugin("visit"));
    let gateway = ServiceSpec::new(&plugin("gateway"));
    let config = dir.path().join("services.toml");
    let _both = Proc::multi_host(&config, &[visit.clone(), gateway.clone()], &registry, &[]);

    // A local caller (gateway -> visit in process) still reaches log, which
    // only another process runs.
    let reply = get(&gateway.url("/visit/"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "1");

    // Another process finds visit in the multi-service host by the registry.
    let other = ServiceSpec::new(&plugin("gateway"));
    let _other = Proc::service_host(&other, &registry, &[]);
    assert!(poll_until(SETTLE, || get(&other.url("/visit/")).status == 200));
    let lines = std::fs::read_to_string(dir.path().join("services.log")).unwrap();
    assert!(lines.lines().count() >= 2, "{lines}");
    assert!(lines.lines().all(|l| l.contains(" visit: ")), "{lines}");
}

/// The log of a host started on `services`, from the file `config`, which
/// must refuse them.
fn refused(config: &Path, services: &[ServiceSpec]) -> String {
    std::fs::write(config, harness::config_text(services)).unwrap();
    let mut host = harness::Launch::new("host", harness::binary("host"))
        .arg("--config")
        .arg(config)
        .spawn()
        .unwrap();
    let status = host.wait_exit(SETTLE).expect("a bad config ends the host");
    assert!(!status.success());
    host.log()
}

#[test]
fn a_bad_config_is_refused_naming_the_file_the_service_and_the_key() {
    let dir = TempDir::new("multi-bad");
    let config = dir.path().join("bad.toml");
    let refused = |services: &[ServiceSpec]| refused(&config, services);

    let log = refused(&[ServiceSpec::new(&plugin("visit")).option("request-timeout", "0s")]);
    assert!(log.contains("bad.toml"), "{log}");
    assert!(log.contains("service 1"), "{log}");
    assert!(log.contains("--request-timeout"), "{log}");

    // What is found wrong only at start names the file too.
    let log = refused(&[
        ServiceSpec::new(&plugin("visit")),
        ServiceSpec::new(&plugin("visit")),
    ]);
    assert!(
        log.contains("bad.toml: service 2") && log.contains("is named 'visit'"),
        "{log}"
    );
}

/// Two services that would register one address are refused at start,
/// before either registers, whether the address is advertised by both or
/// advertised by one and listened on by the other: calls in process find a
/// service by its registered address.
#[test]
fn two_services_that_register_one_address_are_refused() {
    let dir = TempDir::new("multi-same-addr");
    let config = dir.path().join("bad.toml");
    let shared = ServiceSpec::new(&plugin("log")).addr;

    let log = ServiceSpec::new(&plugin("log")).option("advertise", &shared);
    let visit = ServiceSpec::new(&plugin("visit")).option("advertise", &shared);
    let text = refused(&config, &[log, visit]);
    let line = format!(
        "bad.toml: service 2 ({}): advertise {shared} is the address service 1 ({}) registers too",
        plugin("visit").display(),
        plugin("log").display()
    );
    assert!(text.contains(&line), "{text}");

    let visit = ServiceSpec::new(&plugin("visit"));
    let log = ServiceSpec::new(&plugin("log")).option("advertise", &visit.addr);
    let text = refused(&config, &[log, visit.clone()]);
    let line = format!(
        "bad.toml: service 2 ({}): addr {} is the address service 1 ({}) registers too",
        plugin("visit").display(),
        visit.addr,
        plugin("log").display()
    );
    assert!(text.contains(&line), "{text}");
}

/// Standard `wasi:http` components take part in calls within one process
/// as plugins of Sparrow's own world do: the gateway reaches one in
/// process, and gets its streamed answer whole; its own outgoing request to
/// a required service of the same process is served there too, where the
/// callee sees the calling service's address as its client's (over HTTP it
/// would be a connection's ephemeral port).
#[test]
fn standard_components_call_and_are_called_in_process() {
    let dir = TempDir::new("multi-proxy");
    let registry = Proc::registry(&[]);
    let echo = ServiceSpec::new(&stub("echo"));
    let hello = ServiceSpec::new(&plugin("hello-http"))
        .option("name", "hello")
        .option("requires", "echo");
    let gateway = ServiceSpec::new(&plugin("gateway"));
    let config = dir.path().join("services.toml");
    let services = [echo.clone(), hello.clone(), gateway.clone()];
    let _host = Proc::multi_host(&config, &services, &registry, &[]);

    let reply = get(&gateway.url("/hello/hello/Ada"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hello, Ada!\n");
    let reply = get(&gateway.url("/hello/stream?chunks=3&size=5"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "x".repeat(15));

    let reply = get(&hello.url("/call/echo/headers"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let client = format!("x-sparrow-client-addr: {}", hello.addr);
    assert!(reply.text().contains(&client), "{}", reply.text());
}

/// Lines of `log` that contain `needle`.
fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|line| line.contains(needle)).count()
}

/// A swap may not give a service the name of another service of its
/// process, as a config may not: the new version is refused with a line
/// naming the reason and the old one keeps serving, and of two services
/// swapped to one new name at once exactly one gets it.
#[test]
fn a_swap_to_the_name_of_another_service_of_the_process_is_refused() {
    let dir = TempDir::new("multi-rename");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let [a_file, b_file, c_file] = ["a", "b", "c"].map(|n| dir.path().join(format!("{n}.wasm")));
    std::fs::copy(stub("echo"), &a_file).unwrap();
    std::fs::copy(plugin("visit"), &b_file).unwrap();
    std::fs::copy(plugin("log"), &c_file).unwrap();
    let registry = Proc::registry(&[]);
    let a = ServiceSpec::new(&a_file);
    let b = ServiceSpec::new(&b_file);
    let c = ServiceSpec::new(&c_file).option("dir", run.to_str().unwrap());
    let config = dir.path().join("services.toml");
    let host = Proc::multi_host(&config, &[a.clone(), b.clone(), c.clone()], &registry, &[]);
    let visit = || get(&b.url("/"));
    assert!(poll_until(SETTLE, || visit().status == 200));

    // b becomes a second `log`: refused, visit keeps serving and its
    // calls to log still reach c, the one with a directory.
    install_atomically(&plugin("log"), &b_file);
    let refused = "another service of this host is named 'log'";
    assert!(host.wait_for_log(refused, SETTLE), "{}", host.log());
    let log = host.log();
    assert!(log.contains("new plugin refused"), "{log}");
    assert!(!log.contains("registered anew"), "{log}");
    let reply = visit();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "2");
    assert_eq!(
        harness::registered(&registry, "log"),
        std::slice::from_ref(&c.addr)
    );
    assert_eq!(
        harness::registered(&registry, "visit"),
        std::slice::from_ref(&b.addr)
    );
    let lines = std::fs::read_to_string(run.join("services.log")).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");

    // a and b both become `gateway` at once, while the registry hangs: each
    // swap then spends the registry's timeout between its check of the name
    // and its install. One of them gets the name.
    registry.signal(harness::Signal::SIGSTOP).unwrap();
    install_atomically(&plugin("gateway"), &a_file);
    install_atomically(&plugin("gateway"), &b_file);
    let taken = "another service of this host is named 'gateway'";
    let settled = || {
        let log = host.log();
        count(&log, taken) + count(&log, "plugin swapped") >= 2
    };
    assert!(poll_until(SETTLE, settled), "{}", host.log());
    registry.signal(harness::Signal::SIGCONT).unwrap();
    let log = host.log();
    assert_eq!(count(&log, "plugin swapped"), 1, "{log}");
    assert_eq!(count(&log, taken), 1, "{log}");
}

/// At a stop, a request in flight that calls another service of the same
/// process still reaches it in process, as it would reach a service of
/// another process, though that service has no request of its own left:
/// each service stops only once the whole process has drained. New
/// connections are refused from the start of the stop.
#[test]
fn a_request_in_flight_at_a_stop_still_calls_a_service_of_its_process() {
    use std::io::{Read, Write};
    let dir = TempDir::new("multi-stop");
    let registry = Proc::registry(&[]);
    let echo = ServiceSpec::new(&stub("echo"));
    let gateway = ServiceSpec::new(&plugin("gateway"));
    let config = dir.path().join("services.toml");
    let mut host = Proc::multi_host(&config, &[echo.clone(), gateway.clone()], &registry, &[]);
    assert!(poll_until(SETTLE, || get(&gateway.url("/echo/")).status == 200));

    // A body that has not all arrived when the stop comes; `100 Continue`
    // says the gateway has begun to read it.
    let mut slow = std::net::TcpStream::connect(&gateway.addr).unwrap();
    slow.set_read_timeout(Some(SETTLE)).unwrap();
    let head =
        "POST /echo/x HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 10\r\n\r\n";
    slow.write_all(head.as_bytes()).unwrap();
    let mut continued = Vec::new();
    while !continued.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        slow.read_exact(&mut byte).unwrap();
        continued.push(byte[0]);
    }
    let continued = String::from_utf8_lossy(&continued);
    assert!(continued.starts_with("HTTP/1.1 100"), "{continued}");
    slow.write_all(b"abc").unwrap();
    host.signal(harness::Signal::SIGTERM).unwrap();
    assert!(poll_until(SETTLE, || count(&host.log(), "shutting down") == 2));
    let refused = |addr: &str| std::net::TcpStream::connect(addr).is_err();
    assert!(poll_until(SETTLE, || refused(&echo.addr) && refused(&gateway.addr)));
    slow.write_all(b"defghij").unwrap();
    let mut answer = Vec::new();
    slow.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        host.log()
    );
    assert!(answer.ends_with("\r\n\r\nabcdefghij"), "{answer}");
    let status = host.wait_exit(SETTLE).expect("the host exits once drained");
    assert!(status.success(), "{}", host.log());
    assert_eq!(count(&host.log(), "stopped"), 2, "{}", host.log());
}

/// A pool of more instance slots than one process can map (the stacks'
/// guard pages and the memories' mappings, within `vm.max_map_count`) is
/// refused at start, naming `max-instances`, the sum and the limit, rather
/// than failing in wasmtime or, worse, under load.
#[test]
fn instance_slots_past_what_a_process_can_map_are_refused_at_start() {
    let dir = TempDir::new("multi-pool");
    let config = dir.path().join("pool.toml");
    let services: Vec<ServiceSpec> = (0..4)
        .map(|_| ServiceSpec::new(&stub("echo")).option("max-instances", "10000"))
        .collect();
    let log = refused(&config, &services);
    let line = log
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        line.contains("max-instances (summed over the services of this host) needs 40000")
            && line.contains("vm.max_map_count is")
            && !line.contains("stack guard page"),
        "{log}"
    );
}

/// A key of one value given a list is refused naming the service and the
/// key. (A list key also takes one string, as its flag does: the other
/// tests' `requires = "echo"`.)
#[test]
fn a_list_for_a_key_of_one_value_is_refused_naming_the_service_and_the_key() {
    let dir = TempDir::new("multi-types");
    let config = dir.path().join("types.toml");
    let plugin = stub("echo").display().to_string();
    std::fs::write(
        &config,
        format!("[[service]]\nplugin = {plugin:?}\naddr = [\"127.0.0.1:1\"]\n"),
    )
    .unwrap();
    let mut host = harness::Launch::new("host", harness::binary("host"))
        .arg("--config")
        .arg(&config)
        .spawn()
        .unwrap();
    let status = host.wait_exit(SETTLE).expect("a bad config ends the host");
    assert!(!status.success());
    let line = format!(
        "error: {}: service 1 ({plugin}): key 'addr': a list is not a value it takes",
        config.display()
    );
    assert!(host.log().contains(&line), "{}", host.log());
}

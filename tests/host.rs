//! One host and stub plugins: what a plugin sees, what it cannot reach, what
//! a faulty one costs, and how bad start-up input is reported.

use std::time::{Duration, Instant};

use harness::{Launch, Proc, Signal, TempDir, binary, get, poll_until, post, send, stub};

const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

fn echo_host(extra: &[&str]) -> (Proc, Proc) {
    let registry = Proc::registry(&[]);
    let host = Proc::host(&stub("echo"), &registry, extra);
    (registry, host)
}

#[test]
fn echo_sees_method_path_query_headers_and_body() {
    let (_registry, host) = echo_host(&[]);
    let reply = send(
        "PUT",
        &host.url("/some/path?x=1&y=2"),
        &[("x-test-color", "blue")],
        b"hello",
    )
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello");
    assert_eq!(reply.headers["x-echo-method"], "PUT");
    assert_eq!(reply.headers["x-echo-path"], "/some/path?x=1&y=2");
    assert_eq!(reply.headers["x-test-color"], "blue");
}

#[test]
fn a_plugin_reads_its_directory_and_nothing_else() {
    let dir = TempDir::new("fs");
    std::fs::write(dir.path().join("inside.txt"), "granted").unwrap();
    let outside = TempDir::new("fs-outside");
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    let (_registry, host) = echo_host(&["--dir", dir.path().to_str().unwrap()]);

    let inside = get(&host.url("/read?path=inside.txt"));
    assert_eq!((inside.status, inside.text().as_str()), (200, "granted"));

    let secret = outside.path().join("secret.txt");
    for path in [secret.to_str().unwrap(), "../secret.txt", "/etc/hostname"] {
        let reply = get(&host.url(&format!("/read?path={path}")));
        assert_eq!(reply.status, 500, "{path} was readable: {}", reply.text());
        assert!(reply.text().starts_with("read failed"), "{}", reply.text());
    }
}

#[test]
fn without_dir_a_plugin_sees_no_file_and_no_environment() {
    let (_registry, host) = echo_host(&[]);
    let reply = get(&host.url("/read?path=Cargo.toml"));
    assert_eq!(reply.status, 500, "{}", reply.text());
    let env = get(&host.url("/env"));
    assert_eq!((env.status, env.text().as_str()), (200, "0"));
}

#[test]
fn a_plugin_cannot_open_a_socket() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap();
    let (_registry, host) = echo_host(&[]);
    let reply = get(&host.url(&format!("/connect?addr={target}")));
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        reply.text().starts_with("connect failed"),
        "{}",
        reply.text()
    );
    assert!(
        listener.accept().is_err(),
        "the plugin reached the listener"
    );
}

#[test]
fn heartbeat_is_answered_by_the_host() {
    let (_registry, host) = echo_host(&[]);
    assert_eq!(get(&host.url("/heart-beat")).status, 200);
    assert_eq!(post(&host.url("/heart-beat"), b"").status, 405);
}

/// A stop while the host still tries to register (here with a registry
/// that is not there) ends it at once, cleanly.
#[test]
fn a_stop_while_registering_exits_zero() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut host = Launch::new("host", binary("host"))
            .arg("--plugin")
            .arg(stub("plain-echo"))
            .args(["--addr", "127.0.0.1:0", "--registry-wait", "60s"])
            // Nothing listens on port 9 of loopback in a test machine.
            .args(["--registry", "http://127.0.0.1:9"])
            .start()
            .unwrap();
        assert!(
            host.wait_for_log("registration failed; retrying", EXIT_TIMEOUT),
            "{}",
            host.log()
        );
        host.signal(signal).unwrap();
        let status = host.wait_exit(EXIT_TIMEOUT).expect("host exits");
        assert!(status.success(), "{signal}: {status}\n{}", host.log());
        assert!(!host.log().contains("panicked"), "{}", host.log());
    }
}

/// A registry that refuses the record (here: the host advertises the
/// registry's own address) ends the start at once, with the registry's
/// reason, instead of after `--registry-wait` of retries.
#[test]
fn a_registration_the_registry_refuses_ends_the_start_with_its_reason() {
    let registry = Proc::registry(&[]);
    let started = Instant::now();
    let line = refused_start(&[
        "--plugin",
        stub("plain-echo").to_str().unwrap(),
        "--addr",
        "127.0.0.1:0",
        "--advertise",
        &registry.addr().to_string(),
        "--registry",
        &registry.url(""),
        "--registry-wait",
        "60s",
    ]);
    assert!(
        line.contains("registration refused")
            && line.contains("status 400")
            && line.contains("own address"),
        "{line}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{line}");
}

/// A client that shuts down its sending side once its request is out
/// still gets the whole answer, every time.
#[test]
fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    use std::io::{Read, Write};
    let (_registry, host) = echo_host(&[]);
    for n in 0..40 {
        let mut stream = std::net::TcpStream::connect(host.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let body = format!("half {n}");
        let request = format!(
            "POST /half HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with(&body),
            "request {n}: {answer:?}"
        );
    }
}

/// Starts a host that must refuse to start, and returns its last log line.
fn refused_start(args: &[&str]) -> String {
    let mut host = Launch::new("host", binary("host"))
        .args(args)
        .spawn()
        .unwrap();
    let status = host.wait_exit(EXIT_TIMEOUT).expect("host exits");
    assert!(!status.success(), "host started with {args:?}");
    let log = host.log();
    let last = log.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("error: "), "{log}");
    last
}

/// `--token` must be one a header can carry: an empty one would turn
/// authentication off without a word, a non-ASCII one fail every request.
#[test]
fn a_token_no_header_can_carry_is_refused_at_start() {
    let echo = stub("echo");
    for (token, problem) in [("", "empty"), ("sécret", "not visible ASCII")] {
        let mut host = Launch::new("host", binary("host"))
            .arg("--plugin")
            .arg(&echo)
            .args(["--addr", "127.0.0.1:0", "--registry-wait", "1s"])
            // Nothing listens on port 9 of loopback in a test machine.
            .args(["--registry", "http://127.0.0.1:9", "--token", token])
            .spawn()
            .unwrap();
        let status = host.wait_exit(EXIT_TIMEOUT).expect("host exits");
        assert!(!status.success(), "--token {token:?} was accepted");
        let log = host.log();
        let first = log.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error:") && first.contains("--token") && first.contains(problem),
            "{token:?}: {log}"
        );
    }
}

/// Additions to the contract keep old plugins running: a plugin built for
/// `sparrow:service@0.1.0` loads on this host (0.1.1) and its imports reach
/// the host's, resolved semver-compatibly.
#[test]
fn a_plugin_built_for_the_first_contract_version_still_runs() {
    let registry = Proc::registry(&[]);
    let host = Proc::host(&stub("contract-0-1-0"), &registry, &[]);
    for hits in ["1", "2"] {
        let reply = get(&host.url("/"));
        assert_eq!((reply.status, reply.text()), (200, hits.to_owned()));
    }
}

#[test]
fn bad_start_up_input_exits_with_one_line_naming_the_problem() {
    let dir = TempDir::new("bad-input");
    let text_file = dir.path().join("notes.wasm");
    std::fs::write(&text_file, "not wasm at all").unwrap();
    let core_module = dir.path().join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let missing = dir.path().join("missing.wasm");
    let echo = stub("echo");
    let other = stub("other-world");
    let plugin_args = |plugin: &std::path::Path| -> Vec<String> {
        vec![
            "--plugin".into(),
            plugin.to_str().unwrap().into(),
            "--addr".into(),
            "127.0.0.1:0".into(),
            "--registry-wait".into(),
            "1s".into(),
            "--registry".into(),
            // Nothing listens on port 9 of loopback in a test machine.
            "http://127.0.0.1:9".into(),
        ]
    };
    let run =
        |args: Vec<String>| refused_start(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let line = run(plugin_args(&missing));
    assert!(
        line.contains("cannot read plugin") && line.contains("missing.wasm"),
        "{line}"
    );
    let line = run(plugin_args(&text_file));
    assert!(line.contains("not a WebAssembly file"), "{line}");
    let line = run(plugin_args(&core_module));
    assert!(line.contains("core WebAssembly module"), "{line}");
    let line = run(plugin_args(&other));
    assert!(
        line.contains("is not a component of the sparrow:service"),
        "{line}"
    );
    // A plugin that sends HTTP itself: the imports are named, and the ways
    // to do without them.
    let line = run(plugin_args(&stub("fetches")));
    assert!(
        line.contains("wasi:http/outgoing-handler@")
            && line.contains("which this host does not provide")
            && line.contains("call-service")
            && line.contains("--disable http --disable fetch-event"),
        "{line}"
    );
    let line = run(plugin_args(&echo));
    assert!(line.contains("accepted the registration within"), "{line}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut args = plugin_args(&echo);
    args[3] = taken.local_addr().unwrap().to_string();
    let line = run(args);
    assert!(line.contains("cannot listen on"), "{line}");

    // An --allow-outbound entry in another spelling would match nothing.
    for entry in [
        "http://127.0.0.1:9",
        "127.0.0.1",
        "127.0.0.1:9/",
        " 127.0.0.1:9",
    ] {
        let mut args = plugin_args(&echo);
        args.extend(["--allow-outbound".into(), entry.into()]);
        let mut host = Launch::new("host", binary("host"))
            .args(&args)
            .spawn()
            .unwrap();
        let status = host.wait_exit(EXIT_TIMEOUT).expect("host exits");
        assert!(!status.success(), "--allow-outbound {entry:?} was taken");
        let log = host.log();
        assert!(
            log.contains("--allow-outbound") && log.contains("is not HOST:PORT"),
            "{entry:?}: {log}"
        );
    }

    let mut args = plugin_args(&echo);
    args.extend(["--memory-limit".into(), "lots".into()]);
    let mut host = Launch::new("host", binary("host"))
        .args(&args)
        .spawn()
        .unwrap();
    let status = host.wait_exit(EXIT_TIMEOUT).expect("host exits");
    assert!(!status.success());
    assert!(host.log().contains("--memory-limit"), "{}", host.log());
}

#[test]
fn a_trap_costs_one_request() {
    let (_registry, host) = echo_host(&[]);
    let reply = get(&host.url("/trap"));
    assert_eq!(reply.status, 500);
    assert!(
        reply.text().contains("failed on this request"),
        "{}",
        reply.text()
    );
    assert!(
        host.wait_for_log("stub trap requested", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    assert_eq!(post(&host.url("/after"), b"fine").text(), "fine");
}

#[test]
fn an_endless_loop_ends_at_the_request_timeout_and_others_are_served_meanwhile() {
    let (_registry, host) = echo_host(&["--request-timeout", "2s"]);
    let looping = {
        let url = host.url("/loop");
        std::thread::spawn(move || {
            let started = Instant::now();
            (get(&url), started.elapsed())
        })
    };
    // While the loop spins, the host keeps serving.
    for _ in 0..5 {
        assert_eq!(post(&host.url("/meanwhile"), b"ok").status, 200);
    }
    let (reply, took) = looping.join().unwrap();
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(took >= Duration::from_secs(2), "stopped early: {took:?}");
    assert_eq!(post(&host.url("/after"), b"fine").text(), "fine");

    // No thread is left spinning: over the next second the host is idle
    // (a spinning thread would use the whole second).
    let before = host.cpu_time().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let used = host.cpu_time().unwrap() - before;
    assert!(
        used < Duration::from_millis(300),
        "host used {used:?} of CPU while idle"
    );
}

/// Plugins spinning on every runtime thread (four here, two for each of
/// the two threads, whichever takes which) do not make the host deaf: at each epoch tick they yield to the runtime,
/// which takes new connections and requests before running them on. A
/// probe waits about one tick (10 ms) on an idle machine, some more when
/// other tests share the cores. The runtime's own rhythm (I/O polled every
/// 61 tasks run) had probes wait up to 0.6 s, and one in ten 0.45 s or
/// more: the bound is on that tenth, far from both.
#[test]
fn spinning_plugins_leave_the_host_answering_others() {
    let (_registry, host) = echo_host(&["--request-timeout", "6s"]);
    let spinning: Vec<_> = (0..4)
        .map(|_| {
            let url = host.url("/loop");
            std::thread::spawn(move || get(&url))
        })
        .collect();
    // They are running once the host takes most of a core, whatever else
    // runs beside this test.
    let mut last = host.cpu_time().unwrap();
    assert!(poll_until(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(100));
        let now = host.cpu_time().unwrap();
        let used = now - std::mem::replace(&mut last, now);
        used > Duration::from_millis(60)
    }));
    let mut waits: Vec<Duration> = (0..20)
        .map(|_| {
            let sent = Instant::now();
            assert_eq!(post(&host.url("/probe"), b"ok").status, 200);
            sent.elapsed()
        })
        .collect();
    for spinner in spinning {
        assert_eq!(spinner.join().unwrap().status, 504);
    }
    waits.sort();
    let tenth_longest = waits[waits.len() * 9 / 10];
    assert!(
        tenth_longest < Duration::from_millis(300),
        "probes waited {waits:?} while plugins spun"
    );
}

#[test]
fn a_memory_hog_stops_at_the_memory_limit() {
    const LIMIT: u64 = 32 << 20;
    // A finished instance's slot keeps at most 2 MiB of what it wrote
    // (KEEP_RESIDENT in host/src/plugin/engine.rs) and the rest goes back to
    // the kernel: 48 hogs must add up to less than the four that ran at once.
    const RESIDENT_BOUND: u64 = 4 * LIMIT + (64 << 20);
    let (_registry, host) = echo_host(&["--memory-limit", "32MiB"]);
    let baseline = host.rss_bytes().unwrap();
    for _ in 0..11 {
        let hogs: Vec<_> = (0..4)
            .map(|_| {
                let url = host.url("/hog");
                std::thread::spawn(move || get(&url))
            })
            .collect();
        for hog in hogs {
            let reply = hog.join().unwrap();
            assert_eq!(reply.status, 500, "{}", reply.text());
        }
    }
    for _ in 0..4 {
        assert_eq!(get(&host.url("/hog")).status, 500);
    }
    assert!(
        host.log().contains("memory allocation of"),
        "{}",
        host.log()
    );
    assert_eq!(post(&host.url("/after"), b"fine").text(), "fine");
    let grown = host.rss_bytes().unwrap().saturating_sub(baseline);
    assert!(
        grown < RESIDENT_BOUND,
        "host grew by {} MiB after 48 hogs of 32 MiB",
        grown >> 20
    );
}

#[test]
fn deep_recursion_is_a_trap_not_a_crash() {
    let (_registry, host) = echo_host(&[]);
    let reply = get(&host.url("/recurse"));
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(post(&host.url("/after"), b"fine").text(), "fine");
}

#[test]
fn nothing_in_plugin_memory_survives_a_request() {
    let (_registry, host) = echo_host(&[]);
    for _ in 0..5 {
        assert_eq!(get(&host.url("/static")).text(), "1");
    }
}

#[test]
fn a_slow_plugin_does_not_block_other_requests() {
    let (_registry, host) = echo_host(&[]);
    // Warm up: the first request pays for connection set-up.
    assert_eq!(get(&host.url("/sleep?ms=1")).status, 200);
    let started = Instant::now();
    let sleepers: Vec<_> = (0..8)
        .map(|_| {
            let url = host.url("/sleep?ms=200");
            std::thread::spawn(move || get(&url).status)
        })
        .collect();
    for sleeper in sleepers {
        assert_eq!(sleeper.join().unwrap(), 200);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1000),
        "8 requests sleeping 200 ms took {took:?}: they ran one after another"
    );
}

#[test]
fn with_reuse_an_instance_serves_n_requests_and_a_failed_one_is_dropped() {
    let (_registry, host) = echo_host(&["--reuse", "3"]);
    let counts: Vec<String> = (0..4).map(|_| get(&host.url("/static")).text()).collect();
    assert_eq!(counts, ["1", "2", "3", "1"]);
    // The idle instance (one request served) takes the trap and is dropped.
    assert_eq!(get(&host.url("/trap")).status, 500);
    assert_eq!(get(&host.url("/static")).text(), "1");
}

#[test]
fn a_trap_is_logged_with_the_request_and_the_plugin_frames_only() {
    let registry = Proc::registry(&[]);
    // RUST_BACKTRACE is for the host's own panics: a plugin's trap must not
    // bring the host's native frames with it.
    let mut host = Launch::host(
        binary("host"),
        &stub("echo"),
        "127.0.0.1:0",
        &registry.url(""),
    )
    .env("RUST_BACKTRACE", "1")
    .start()
    .unwrap();
    host.wait_listening(Duration::from_secs(60)).unwrap();
    let reply = send("POST", &host.url("/trap?why=test"), &[], b"x").unwrap();
    assert_eq!(reply.status, 500);
    assert!(
        host.wait_for_log("plugin trapped", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    let log = host.log();
    let trap = log.lines().find(|l| l.contains("plugin trapped")).unwrap();
    for expected in [
        "ERROR",
        "service=\"echo\"",
        "method=\"POST\"",
        "path=\"/trap\"",
        "plugin frames: wasm-function[",
    ] {
        assert!(trap.contains(expected), "{expected} missing: {trap}");
    }
    for native in ["Stack backtrace", "std::rt::lang_start", "tokio::runtime"] {
        assert!(!log.contains(native), "native frames in the log:\n{log}");
    }
    // The panic message is the plugin's stderr, a warning; Rust's hint to
    // set RUST_BACKTRACE (which a plugin cannot) is dropped.
    let panic = log
        .lines()
        .find(|l| l.contains("stub trap requested"))
        .unwrap();
    assert!(panic.contains("WARN"), "{panic}");
    assert!(!log.contains("note: run with `RUST_BACKTRACE=1`"), "{log}");
}

/// Notifications come from whoever reaches a host (without `--token`):
/// past `--max-known-instances` a new instance is refused with 507 naming
/// the flag, so that a flood of addresses cannot grow its memory for good;
/// one it knows is still updated.
#[test]
fn past_max_known_instances_a_notification_of_a_new_one_is_refused() {
    let registry = Proc::registry(&[]);
    let host = Proc::host(
        &stub("plain-echo"),
        &registry,
        &["--requires", "*", "--max-known-instances", "2"],
    );
    let notify = |port: u16| {
        let record = format!(r#"{{"Name":"x","Addr":"127.0.0.1:{port}","RequiredServices":[]}}"#);
        post(&host.url("/services"), record.as_bytes())
    };
    assert_eq!(notify(1).status, 200);
    assert_eq!(notify(2).status, 200);
    let refused = notify(3);
    assert_eq!(refused.status, 507, "{}", refused.text());
    assert!(
        refused.text().contains("--max-known-instances"),
        "{}",
        refused.text()
    );
    assert_eq!(notify(1).status, 200);
}

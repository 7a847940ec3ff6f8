//! Faults across processes: kill -9, a restarted registry, refused
//! connections, hanging and broken upstreams, loops, big bodies, and the
//! promise that no answered log line or counted visit is lost.

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{
    FAST_HEARTBEATS, Launch, NO_HEARTBEAT, Proc, Signal, TempDir, binary, free_addr, get, plugin,
    poll_until, post, registered, send, stub,
};

const SETTLE: Duration = Duration::from_secs(20);

/// How soon the harness's registry evicts a dead instance: the next
/// heartbeat, every attempt failing, and a second of slack.
fn eviction_bound() -> Duration {
    let h = FAST_HEARTBEATS;
    h.interval + h.retry_delay * h.attempts + Duration::from_secs(1)
}

fn log_host(registry: &Proc, dir: &TempDir) -> Proc {
    Proc::host(
        &plugin("log"),
        registry,
        &["--dir", dir.path().to_str().unwrap()],
    )
}

#[test]
fn a_killed_host_is_evicted_in_time_and_visit_recovers_with_a_new_log() {
    let dir = TempDir::new("kill9");
    let registry = Proc::registry(&[]);
    let mut log = log_host(&registry, &dir);
    let visit = Proc::host(&plugin("visit"), &registry, &[]);
    assert!(poll_until(SETTLE, || get(&visit.url("/")).status == 200));

    log.kill9();
    let killed = Instant::now();
    assert!(poll_until(SETTLE, || registered(&registry, "log").is_empty()));
    let evicted_after = killed.elapsed();
    let bound = eviction_bound();
    assert!(
        evicted_after <= bound,
        "evicted after {evicted_after:?}, bound {bound:?}"
    );
    // visit heard of it: no log instance left to try.
    assert!(poll_until(SETTLE, || {
        let reply = get(&visit.url("/"));
        reply.status == 500 && reply.text().contains("no instance of the log service")
    }));

    let _new_log = log_host(&registry, &dir);
    assert!(
        poll_until(SETTLE, || get(&visit.url("/")).status == 200),
        "visit never found the new log:\n{}",
        visit.log()
    );
}

#[test]
fn hosts_register_again_after_a_registry_restart() {
    let dir = TempDir::new("restart");
    let addr = free_addr().unwrap().to_string();
    let mut registry = Proc::registry_at(&addr, &[]);
    let fast = ["--heartbeat-timeout", "2s"];
    let _log = Proc::host(
        &plugin("log"),
        &registry,
        &[&fast[..], &["--dir", dir.path().to_str().unwrap()]].concat(),
    );
    let visit = Proc::host(&plugin("visit"), &registry, &fast);
    assert!(poll_until(SETTLE, || get(&visit.url("/")).status == 200));

    registry.kill9();
    let registry = Proc::registry_at(&addr, &[]);
    let restarted = Instant::now();
    assert!(
        poll_until(SETTLE, || registered(&registry, "log").len() == 1
            && registered(&registry, "visit").len() == 1),
        "{}",
        visit.log()
    );
    let back_after = restarted.elapsed();
    assert!(
        back_after < Duration::from_secs(5),
        "table back after {back_after:?}"
    );
    assert_eq!(get(&visit.url("/")).status, 200);
}

#[test]
fn a_refused_instance_is_skipped_and_dropped_from_the_cache() {
    let dir = TempDir::new("refused");
    let registry = Proc::registry(NO_HEARTBEAT);
    let mut first = log_host(&registry, &dir);
    let _second = log_host(&registry, &dir);
    let visit = Proc::host(&plugin("visit"), &registry, &[]);
    assert!(poll_until(SETTLE, || registered(&registry, "log").len() == 2));
    assert!(poll_until(SETTLE, || get(&visit.url("/")).status == 200));

    // No heartbeat will notice: only the callers can.
    first.kill9();
    for _ in 0..10 {
        let reply = get(&visit.url("/"));
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let dropped = visit.log().matches("dropped from the cache").count();
    assert!(dropped <= 1, "the dead instance was tried {dropped} times");
}

#[test]
fn with_a_token_unauthenticated_writes_and_notifications_answer_401() {
    let dir = TempDir::new("token");
    let registry = Proc::registry(&["--token", "s3cret"]);
    let token = ["--token", "s3cret"];
    let _log = Proc::host(
        &plugin("log"),
        &registry,
        &[&token[..], &["--dir", dir.path().to_str().unwrap()]].concat(),
    );
    let visit = Proc::host(&plugin("visit"), &registry, &token);
    assert!(poll_until(SETTLE, || get(&visit.url("/")).status == 200));

    let record = br#"{"Name":"log","Addr":"127.0.0.1:9","RequiredServices":[]}"#;
    assert_eq!(post(&registry.url("/services"), record).status, 401);
    assert_eq!(post(&visit.url("/services"), record).status, 401);
    let authorized = send(
        "POST",
        &visit.url("/services"),
        &[("authorization", "Bearer s3cret")],
        record,
    )
    .unwrap();
    assert_eq!(authorized.status, 200);

    // A host without the token cannot register.
    let mut intruder = Launch::host(
        binary("host"),
        &stub("echo"),
        "127.0.0.1:0",
        &registry.url(""),
    )
    .args(["--registry-wait", "1s"])
    .spawn()
    .unwrap();
    assert!(!intruder.wait_exit(SETTLE).expect("exits").success());
    assert!(intruder.log().contains("401"), "{}", intruder.log());
}

/// A gateway, an echo service behind it, and their registry (no heartbeats,
/// so that fake instances stay registered).
struct Gatewayed {
    registry: Proc,
    gateway: Proc,
    echo: Proc,
}

fn gatewayed(gateway_args: &[&str]) -> Gatewayed {
    let registry = Proc::registry(NO_HEARTBEAT);
    let echo = Proc::host(&stub("echo"), &registry, &[]);
    let gateway = Proc::host(&plugin("gateway"), &registry, gateway_args);
    assert!(poll_until(SETTLE, || get(&gateway.url("/echo/version"))
        .status
        == 200));
    Gatewayed {
        registry,
        gateway,
        echo,
    }
}

/// The header lines the echo stub received.
fn received_headers(reply_text: &str) -> HashMap<String, String> {
    reply_text
        .lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

#[test]
fn the_gateway_drops_hop_by_hop_headers_and_sets_forwarding_ones() {
    let g = gatewayed(&[]);
    let reply = send(
        "GET",
        &g.gateway.url("/echo/headers"),
        &[
            // A client naming X-Forwarded-For in Connection has its own
            // dropped, but cannot strip the gateway's.
            ("connection", "keep-alive, x-test-secret, x-forwarded-for"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9v"),
            ("x-test-secret", "1"),
            ("x-test-kept", "2"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-sparrow-client-addr", "6.6.6.6:66"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let headers = received_headers(&reply.text());
    for dropped in [
        "connection",
        "keep-alive",
        "te",
        "proxy-authorization",
        "x-test-secret",
    ] {
        assert!(
            !headers.contains_key(dropped),
            "{dropped} was forwarded: {headers:?}"
        );
    }
    assert_eq!(headers["x-test-kept"], "2");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-host"], g.gateway.addr().to_string());
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(
        headers["via"],
        format!("1.1 {} (sparrow)", g.gateway.addr())
    );
    // The host speaks for itself: the client's claim did not get through.
    assert_ne!(headers["x-sparrow-client-addr"], "6.6.6.6:66");
}

#[test]
fn a_via_named_by_connection_is_dropped_before_the_loop_guard_reads_it() {
    let g = gatewayed(&[]);
    let own = format!("1.1 {} (sparrow)", g.gateway.addr());
    for via in [own.as_str(), "1.0 proxyA"] {
        let reply = send(
            "GET",
            &g.gateway.url("/echo/headers"),
            &[("connection", "via"), ("via", via)],
            b"",
        )
        .unwrap();
        assert_eq!(reply.status, 200, "Via: {via}: {}", reply.text());
        assert_eq!(received_headers(&reply.text())["via"], own, "Via: {via}");
    }
    // Not named, the gateway's own entry is a loop.
    let reply = send(
        "GET",
        &g.gateway.url("/echo/headers"),
        &[("via", &own)],
        b"",
    )
    .unwrap();
    assert_eq!(reply.status, 508, "{}", reply.text());
}

#[test]
fn the_gateway_says_which_prefix_it_forwarded_and_replaces_a_clients() {
    let g = gatewayed(&[]);
    for client_says in [None, Some("/not-echo"), Some("/echo")] {
        let headers: Vec<(&str, &str)> = client_says
            .map(|prefix| ("x-forwarded-prefix", prefix))
            .into_iter()
            .collect();
        let reply = send("GET", &g.gateway.url("/echo/headers?x=1"), &headers, b"").unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        // The path still carries the prefix; the header names it, once.
        let text = reply.text();
        let prefixes: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("x-forwarded-prefix: "))
            .collect();
        assert_eq!(prefixes, ["/echo"], "client sent {client_says:?}");
    }
    // Called directly, the service sees no prefix.
    let reply = get(&g.echo.url("/headers"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        !reply.text().contains("x-forwarded-prefix"),
        "{}",
        reply.text()
    );
}

#[test]
fn a_forwarding_loop_is_stopped_with_508() {
    let g = gatewayed(&[]);
    // A second gateway: each reaches the other, so /gateway/... bounces
    // between them until one sees its own Via entry.
    let _other = Proc::host(&plugin("gateway"), &g.registry, &[]);
    assert_eq!(registered(&g.registry, "gateway").len(), 2);
    // The first gateway hears of the second through the registry's
    // notification, a moment after the registry lists it: 503 until then.
    let mut reply = None;
    assert!(poll_until(SETTLE, || {
        let answer = get(&g.gateway.url("/gateway/echo/version"));
        let heard = answer.status != 503;
        reply = Some(answer);
        heard
    }));
    let reply = reply.unwrap();
    assert_eq!(reply.status, 508, "{}", reply.text());
    assert!(reply.text().contains("loop detected"), "{}", reply.text());

    let many_hops = (0..10)
        .map(|n| format!("1.1 proxy{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let reply = send(
        "GET",
        &g.gateway.url("/echo/version"),
        &[("via", &many_hops)],
        b"",
    )
    .unwrap();
    assert_eq!(reply.status, 508, "{}", reply.text());

    // A chain of calls at the hosts' limit (`x-sparrow-hops`, counted by
    // the hosts where `Via` is the proxies') is a loop too, not a bad
    // request.
    let reply = send(
        "GET",
        &g.gateway.url("/echo/version"),
        &[("x-sparrow-hops", "10")],
        b"",
    )
    .unwrap();
    assert_eq!(reply.status, 508, "{}", reply.text());
    assert!(reply.text().contains("loop detected"), "{}", reply.text());
}

/// However many known instances refuse, a call goes on to the next one
/// until one answers (the call timeout bounds it all): ten dead instances
/// of a service and one live one, and every call is answered.
#[test]
fn a_call_tries_every_known_instance_until_one_answers() {
    let registry = Proc::registry(NO_HEARTBEAT);
    for _ in 0..10 {
        register_fake(&registry, "echo", &free_addr().unwrap().to_string());
    }
    let _live = Proc::host(&stub("echo"), &registry, &[]);
    let gateway = Proc::host(&plugin("gateway"), &registry, &[]);
    for n in 0..11 {
        let reply = get(&gateway.url("/echo/x"));
        assert_eq!(reply.status, 200, "call {n}: {}", reply.text());
    }
}

/// A host stopped after the registry took its registration but before the
/// answer reached it is not yet watching for stalls when it resumes; the
/// registry may have evicted it meanwhile. Its first check counts from when
/// the registration was sent, so a registration answered more than a
/// second later is made again at once. Here the registry is the slow one,
/// which the host cannot tell apart (and which costs one request).
#[test]
fn a_registration_answered_after_a_stall_is_made_again_at_once() {
    let registrations = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let seen = registrations.clone();
    let registry = fake_http(move |head, _, _| {
        if head.starts_with("POST /services ") {
            let first = {
                let mut seen = seen.lock().unwrap();
                seen.push(Instant::now());
                seen.len() == 1
            };
            if first {
                std::thread::sleep(Duration::from_millis(1500));
            }
            Some(ok_answer("{}"))
        } else {
            Some(ok_answer(""))
        }
    });
    let host = host_with_fake_registry(&stub("plain-echo"), &registry)
        .args(["--heartbeat-timeout", "30s"])
        .start()
        .unwrap();
    assert!(
        poll_until(Duration::from_secs(10), || registrations
            .lock()
            .unwrap()
            .len()
            >= 2),
        "registered {} times:\n{}",
        registrations.lock().unwrap().len(),
        host.log()
    );
    assert!(host.log().contains("stood still"), "{}", host.log());
}

/// A host stopped while its registration is still unanswered withdraws it
/// all the same: the registry may have taken it (here it has, and is slow
/// to answer), and would otherwise list an instance that is gone until
/// heartbeats fail.
#[test]
fn a_stop_while_a_registration_is_unanswered_withdraws_it() {
    let requests = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = requests.clone();
    let registry = fake_http(move |head, _, _| {
        let line = head.lines().next().unwrap_or_default().to_owned();
        seen.lock().unwrap().push(line.clone());
        if line.starts_with("POST /services ") {
            std::thread::sleep(Duration::from_secs(30));
        }
        Some(ok_answer(""))
    });
    let mut host = host_with_fake_registry(&stub("plain-echo"), &registry)
        .start()
        .unwrap();
    let asked = |method: &str| {
        requests
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.starts_with(&format!("{method} /services ")))
    };
    assert!(poll_until(SETTLE, || asked("POST")), "{}", host.log());
    host.signal(Signal::SIGTERM).unwrap();
    let status = host.wait_exit(SETTLE).expect("the host exits");
    assert!(status.success(), "{status}\n{}", host.log());
    assert!(asked("DELETE"), "never deregistered:\n{}", host.log());
}

/// A host stopped long enough to be evicted registers again as soon as it
/// resumes, not a whole `--heartbeat-timeout` later: the heartbeats the
/// registry gave up on while it stood still are answered on resuming, and
/// would otherwise look like a registry that still knows it.
#[test]
fn a_host_resumed_after_its_eviction_registers_again_at_once() {
    let registry = Proc::registry(&[]);
    let host = Proc::host(
        &stub("plain-echo"),
        &registry,
        &["--name", "paused", "--heartbeat-timeout", "30s"],
    );
    let addr = host.addr().to_string();
    let listed = || registered(&registry, "paused").contains(&addr);
    host.signal(Signal::SIGSTOP).unwrap();
    assert!(poll_until(SETTLE, || !listed()), "{}", registry.log());
    host.signal(Signal::SIGCONT).unwrap();
    assert!(
        poll_until(Duration::from_secs(15), listed),
        "not registered again half a heartbeat timeout after resuming:\n{}",
        host.log()
    );
}

/// A loopback HTTP/1.1 server standing for a peer that misbehaves in time:
/// each request's head and body go to `answer`, with how long its
/// connection was idle since its last answer (`None` on a new connection);
/// `answer` returns the whole answer to write, or `None` to close the
/// connection instead. Its address.
fn fake_http<F>(answer: F) -> String
where
    F: Fn(&str, &[u8], Option<Duration>) -> Option<String> + Send + Sync + 'static,
{
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut answered: Option<Instant> = None;
                loop {
                    let (mut head, mut length) = (String::new(), 0);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let idle = answered.map(|at| at.elapsed());
                    let Some(text) = answer(&head, &body, idle) else {
                        return;
                    };
                    if writer.write_all(text.as_bytes()).is_err() {
                        return;
                    }
                    answered = Some(Instant::now());
                }
            });
        }
    });
    addr
}

/// A host of `plugin` on a free port, registered with the fake registry
/// (see [`fake_http`]) at `registry`, an `IP:PORT`.
fn host_with_fake_registry(plugin: &Path, registry: &str) -> Launch {
    Launch::host(
        binary("host"),
        plugin,
        "127.0.0.1:0",
        &format!("http://{registry}"),
    )
}

/// A whole HTTP/1.1 answer: 200 with `body`.
fn ok_answer(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A server closes a kept-alive connection after it was idle for its
/// `--header-timeout` (10 s by default); a client that takes that
/// connection from its pool at the same moment sends its request into the
/// close and gets no answer. Clients give idle connections up sooner (4 s),
/// so they never meet that race with a peer's default. The fake callee here
/// closes, instead of answering, a request on a connection idle for 4.5 s.
#[test]
fn no_call_goes_out_on_a_connection_idle_for_as_long_as_a_server_keeps_one() {
    let log_addr = fake_http(|_, _, idle| {
        idle.is_none_or(|idle| idle < Duration::from_millis(4500))
            .then(|| ok_answer(""))
    });
    let registry = Proc::registry(NO_HEARTBEAT);
    register_fake(&registry, "log", &log_addr);
    let visit = Proc::host(&plugin("visit"), &registry, &[]);
    let reply = get(&visit.url("/"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The fault: the connection to the log service idles for as long as the
    // fake keeps one.
    std::thread::sleep(Duration::from_secs(5));
    let reply = get(&visit.url("/"));
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// A service takes requests before its registration answer arrives, and
/// callers may hear of it from the registry by then (with etcd, the watch
/// can be faster than the answer): a call it makes meanwhile waits for the
/// answer and goes to the instance it names, instead of failing for want
/// of one. The fake registry here answers the registration after 1.5 s.
#[test]
fn a_call_made_before_the_registration_answer_waits_for_it() {
    let registry = Proc::registry(NO_HEARTBEAT);
    let dir = TempDir::new("early-call");
    let log = log_host(&registry, &dir);
    let answer = format!(
        r#"{{"log":[{{"Name":"log","Addr":"{}","RequiredServices":[]}}]}}"#,
        log.addr()
    );
    let slow_registry = fake_http(move |head, _, _| {
        if head.starts_with("POST /services ") {
            std::thread::sleep(Duration::from_millis(1500));
            Some(ok_answer(&answer))
        } else {
            Some(ok_answer("{}"))
        }
    });
    let visit = host_with_fake_registry(&plugin("visit"), &slow_registry)
        .start()
        .unwrap();
    let reply = get(&visit.url("/"));
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), visit.log());
}

/// An instance that hangs (stopped) and that the registry no longer lists,
/// its callers having missed its leaving (the registry restarted
/// meanwhile), costs them a call timeout or two, not one per call for as
/// long as it hangs: a call it fails makes its caller ask the registry.
#[test]
fn a_hung_instance_the_registry_no_longer_lists_leaves_its_callers() {
    let addr = free_addr().unwrap().to_string();
    let mut registry = Proc::registry_at(&addr, &[]);
    let fast = ["--heartbeat-timeout", "2s"];
    let echo = || {
        Proc::host(
            &stub("plain-echo"),
            &registry,
            &[&fast[..], &["--name", "x"]].concat(),
        )
    };
    let gateway = Proc::host(
        &plugin("gateway"),
        &registry,
        &[&fast[..], &["--call-timeout", "1s"]].concat(),
    );
    let (hangs, serves) = (echo(), echo());
    for instance in [&hangs, &serves] {
        let added = format!("instance added name=x addr={}", instance.addr());
        assert!(poll_until(SETTLE, || gateway.log().contains(&added)));
    }
    hangs.signal(Signal::SIGSTOP).unwrap();
    registry.kill9();
    let registry = Proc::registry_at(&addr, &[]);
    // The others register again; the stopped one cannot.
    let serving = [serves.addr().to_string()];
    assert!(poll_until(SETTLE, || registered(&registry, "x") == serving
        && registered(&registry, "gateway").len() == 1));
    let url = gateway.url("/x/");
    let mut timed_out = 0;
    for _ in 0..30 {
        let reply = get(&url);
        match reply.status {
            504 => timed_out += 1,
            status => assert_eq!(status, 200, "{}", reply.text()),
        }
        assert!(
            timed_out <= 2,
            "{timed_out} calls timed out:\n{}",
            gateway.log()
        );
    }
    hangs.signal(Signal::SIGCONT).unwrap();
}

/// A registry replica that lost its watch answers from a copy that may lack
/// an instance registered since, and says so (`x-sparrow-stale`). A caller
/// asking about an instance that failed one call keeps it on such an
/// answer: here the instance was slow once, and serves the next call.
#[test]
fn a_stale_registry_answer_drops_no_instance() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    // Slower than the caller's call timeout the first time only.
    let x_addr = fake_http(move |_, _, _| {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1500));
        }
        Some(ok_answer("x"))
    });
    let asked = Arc::new(AtomicBool::new(false));
    let asked_now = asked.clone();
    let known = format!(r#"{{"x":[{{"Name":"x","Addr":"{x_addr}","RequiredServices":[]}}]}}"#);
    let stale_registry = fake_http(move |head, _, _| {
        if head.starts_with("GET /services/x?") || head.starts_with("GET /services/x ") {
            asked_now.store(true, Ordering::SeqCst);
            Some("HTTP/1.1 200 OK\r\nx-sparrow-stale: true\r\ncontent-length: 2\r\n\r\n[]".into())
        } else if head.starts_with("POST /services ") {
            Some(ok_answer(&known))
        } else {
            Some(ok_answer(""))
        }
    });
    let gateway = host_with_fake_registry(&plugin("gateway"), &stale_registry)
        .args(["--call-timeout", "1s"])
        .rust_log("info,host::outbound=debug")
        .start()
        .unwrap();
    let url = gateway.url("/x/");
    assert_eq!(get(&url).status, 504, "{}", gateway.log());
    assert!(poll_until(SETTLE, || asked.load(Ordering::SeqCst)));
    // The answer was read: the instance kept, or dropped.
    let read = || {
        let log = gateway.log();
        log.contains("cannot tell whether the registry lists the instance")
            || log.contains("dropped from the cache")
    };
    assert!(poll_until(SETTLE, read), "{}", gateway.log());
    let reply = get(&url);
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), gateway.log());
}

/// Instances stopped with SIGTERM while a gateway calls their service fail
/// none of its calls, another instance being there: each deregisters, goes
/// on taking requests for `--stop-grace` while its callers hear it leave,
/// then drains. Before, it closed its kept-alive connections at once, and
/// calls already sent on them failed.
#[test]
fn instances_stopped_under_load_fail_no_call_when_another_serves() {
    let registry = Proc::registry(NO_HEARTBEAT);
    let echo = || Proc::host(&stub("plain-echo"), &registry, &["--name", "x"]);
    let _stays = echo();
    let gateway = Proc::host(&plugin("gateway"), &registry, &[]);
    let url = gateway.url("/x/");
    assert!(poll_until(SETTLE, || get(&url).status == 200));
    let load = harness::load::Load::start(&url, 16);
    for _ in 0..3 {
        let mut goes = echo();
        let addr = goes.addr().to_string();
        // The gateway calls it...
        assert!(poll_until(SETTLE, || gateway
            .log()
            .contains(&format!("instance added name=x addr={addr}"))));
        assert!(load.wait_for_more(500, SETTLE));
        // ...when it stops.
        let status = goes.terminate(SETTLE).unwrap();
        assert!(status.success(), "{status}");
        assert!(load.wait_for_more(500, SETTLE));
    }
    let (ok, failures) = load.stop();
    assert!(
        failures.is_empty(),
        "{} of {} calls failed, e.g. {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(3)]
    );
}

/// Registers a fake instance of `name` at `addr` directly with the registry.
fn register_fake(registry: &Proc, name: &str, addr: &str) {
    let record = format!(r#"{{"Name":"{name}","Addr":"{addr}","RequiredServices":[]}}"#);
    assert_eq!(
        post(&registry.url("/services"), record.as_bytes()).status,
        200
    );
}

#[test]
fn gateway_failures_have_statuses_that_say_what_happened() {
    let g = gatewayed(&["--call-timeout", "1s"]);

    let unknown = get(&g.gateway.url("/nosuch/"));
    assert_eq!(unknown.status, 503, "{}", unknown.text());
    assert!(unknown.text().contains("'nosuch'"), "{}", unknown.text());

    // Accepts, reads, never answers.
    let hanging = TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging_addr = hanging.local_addr().unwrap().to_string();
    let keep_open = std::thread::spawn(move || {
        let (mut stream, _) = hanging.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        std::thread::sleep(Duration::from_secs(3));
    });
    // Accepts and closes without a word.
    let broken = TcpListener::bind("127.0.0.1:0").unwrap();
    let broken_addr = broken.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let closer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            broken.set_nonblocking(true).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match broken.accept() {
                    Ok((stream, _)) => drop(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    };
    register_fake(&g.registry, "hanging", &hanging_addr);
    register_fake(&g.registry, "broken", &broken_addr);
    assert!(poll_until(SETTLE, || get(&g.gateway.url("/broken/"))
        .status
        != 503));

    let timeout = get(&g.gateway.url("/hanging/"));
    assert_eq!(timeout.status, 504, "{}", timeout.text());
    assert!(timeout.text().contains("'hanging'"), "{}", timeout.text());
    let broke = get(&g.gateway.url("/broken/"));
    assert_eq!(broke.status, 502, "{}", broke.text());
    assert!(broke.text().contains("'broken'"), "{}", broke.text());

    stop.store(true, Ordering::Relaxed);
    closer.join().unwrap();
    keep_open.join().unwrap();
}

#[test]
fn a_10_mib_body_goes_through_and_an_oversized_one_is_refused() {
    let g = gatewayed(&["--max-body", "12MiB"]);
    let body: Vec<u8> = (0..10 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let reply = send("POST", &g.gateway.url("/echo/upload"), &[], &body).unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body[..200.min(reply.body.len())])
    );
    assert!(reply.body == body, "the body changed on the way");

    let too_big = vec![b'x'; 13 << 20];
    let reply = send("POST", &g.gateway.url("/echo/upload"), &[], &too_big).unwrap();
    assert_eq!(reply.status, 413, "{}", reply.text());
}

#[test]
fn every_answered_log_line_survives_a_kill_9_exactly_once() {
    answered_log_lines_survive_a_kill_9(&[]);
}

#[test]
fn with_sync_every_answered_log_line_survives_a_kill_9_exactly_once() {
    answered_log_lines_survive_a_kill_9(&["--sync"]);
}

fn answered_log_lines_survive_a_kill_9(extra: &[&str]) {
    let dir = TempDir::new("log-kill");
    let registry = Proc::registry(NO_HEARTBEAT);
    let mut log = Proc::host(
        &plugin("log"),
        &registry,
        &[&["--dir", dir.path().to_str().unwrap()], extra].concat(),
    );
    let writers = LogWriters::start(&log.url("/log"));
    // Kill once some lines are answered, while the writers are mid-flight:
    // they stop at the first request that gets no answer.
    assert!(writers.wait_for(200));
    log.kill9();
    let answered = writers.stop();

    let text = std::fs::read_to_string(dir.path().join("services.log")).unwrap();
    assert!(text.ends_with('\n'), "torn last line");
    let seen = logged_messages(&text);
    for message in &answered {
        assert_eq!(seen.get(message.as_str()), Some(&1), "{message}");
    }
    assert!(answered.len() >= 200);
}

#[test]
fn every_answered_log_line_survives_log_rotation_under_load_exactly_once() {
    let dir = TempDir::new("log-rotate");
    let registry = Proc::registry(NO_HEARTBEAT);
    let log = log_host(&registry, &dir);
    let file = dir.path().join("services.log");
    let writers = LogWriters::start(&log.url("/log"));
    // Rotated twice while the writers send, as logrotate would: renamed
    // away, and the service must start a new file, not write on into the
    // renamed one.
    for rotation in 1..=2 {
        assert!(writers.wait_for(200 * rotation));
        std::fs::rename(&file, dir.path().join(format!("services.log.{rotation}"))).unwrap();
        assert!(
            poll_until(SETTLE, || file.exists()),
            "no new services.log after rotation {rotation}"
        );
    }
    assert!(writers.wait_for(600));
    let answered = writers.stop();

    let mut text = String::new();
    for name in ["services.log.1", "services.log.2", "services.log"] {
        let part = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(!part.is_empty() && part.ends_with('\n'), "{name}: {part:?}");
        text.push_str(&part);
    }
    let seen = logged_messages(&text);
    for message in &answered {
        assert_eq!(seen.get(message.as_str()), Some(&1), "{message}");
    }
    assert_eq!(seen.len(), answered.len(), "lines nobody was answered for");
}

/// Clients posting distinct log lines (`clientC-lineN`) in a loop, each
/// keeping the lines answered 200, until stopped or until a request gets no
/// answer; any other status fails the test.
struct LogWriters {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    clients: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl LogWriters {
    const CLIENTS: usize = 8;

    fn start(url: &str) -> LogWriters {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let clients = (0..Self::CLIENTS)
            .map(|client| {
                let (url, stop, count) = (url.to_owned(), stop.clone(), answered.clone());
                std::thread::spawn(move || {
                    let mut answered = Vec::new();
                    let started = Instant::now();
                    for n in 0.. {
                        let message = format!("client{client}-line{n}");
                        match send("POST", &url, &[], message.as_bytes()) {
                            Ok(reply) if reply.status == 200 => {
                                answered.push(message);
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(reply) => panic!("{message}: {} {}", reply.status, reply.text()),
                            Err(_) => break,
                        }
                        if stop.load(Ordering::Relaxed)
                            || started.elapsed() > Duration::from_secs(30)
                        {
                            break;
                        }
                    }
                    answered
                })
            })
            .collect();
        LogWriters {
            stop,
            answered,
            clients,
        }
    }

    /// Waits until `total` lines were answered in all.
    fn wait_for(&self, total: usize) -> bool {
        poll_until(SETTLE, || self.answered.load(Ordering::Relaxed) >= total)
    }

    /// Every line answered 200.
    fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.clients
            .into_iter()
            .flat_map(|client| client.join().unwrap())
            .collect()
    }
}

/// How many times each message appears in the log text (lines
/// `TIMESTAMP -: clientC-lineN`); a line of any other shape fails the test.
fn logged_messages(text: &str) -> HashMap<&str, usize> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for line in text.lines() {
        let message = line.split_once(" -: ").map(|(_, m)| m);
        let message = message.filter(|m| m.starts_with("client") && m.contains("-line"));
        let message = message.unwrap_or_else(|| panic!("malformed line: {line:?}"));
        *seen.entry(message).or_default() += 1;
    }
    seen
}

#[test]
fn concurrent_visits_get_distinct_counts_and_the_count_survives_a_restart() {
    const N: usize = 32;
    let dir = TempDir::new("visits");
    let state = dir.path().join("visit-state.jsonl");
    let registry = Proc::registry(&[]);
    let _log = log_host(&registry, &dir);
    let mut visit = Proc::host(
        &plugin("visit"),
        &registry,
        &["--state", state.to_str().unwrap()],
    );
    assert!(poll_until(SETTLE, || get(&visit.url("/")).status == 200));

    let visitors: Vec<_> = (0..N)
        .map(|_| {
            let url = visit.url("/");
            std::thread::spawn(move || get(&url))
        })
        .collect();
    let mut counts: Vec<u64> = visitors
        .into_iter()
        .map(|v| {
            let reply = v.join().unwrap();
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.text().parse().unwrap()
        })
        .collect();
    counts.sort_unstable();
    // Distinct and consecutive. The warm-up took the counts before them: a
    // visit counts even when it fails, as it does while the host, listening
    // already, has not yet registered and heard where log is.
    let after_warm_up = counts[0];
    let last = counts[N - 1];
    assert_eq!(
        counts,
        (after_warm_up..after_warm_up + N as u64).collect::<Vec<_>>()
    );

    visit.kill9();
    let visit = Proc::host(
        &plugin("visit"),
        &registry,
        &["--state", state.to_str().unwrap()],
    );
    // Every visit counts, answered or not: the first after the restart is
    // past the last one before it.
    let mut first = None;
    assert!(poll_until(SETTLE, || {
        let reply = get(&visit.url("/"));
        first = reply
            .text()
            .parse::<u64>()
            .ok()
            .filter(|_| reply.status == 200);
        first.is_some()
    }));
    let first = first.unwrap();
    assert!(
        first > last,
        "the count started again: {first} after {last}"
    );
}

/// The `syncfs` calls a process makes while `during` runs, seen by strace.
/// A kill -9 cannot tell `--sync` from page-cache durability (the kernel
/// keeps what was written); what `--sync` promises is that the data was
/// flushed before the answer, and that is what this observes.
fn syncfs_calls_during(pid: u32, during: impl FnOnce()) -> usize {
    let dir = TempDir::new("strace");
    let out = dir.path().join("trace");
    let mut strace = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=syncfs", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("strace is missing: `cargo xtask test` installs it (Debian's strace)");
    let traced = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("TracerPid:"))?.to_owned();
                line["TracerPid:".len()..].trim().parse::<u32>().ok()
            })
            .is_some_and(|tracer| tracer != 0)
    };
    assert!(poll_until(SETTLE, traced), "strace did not attach");
    during();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(strace.id() as i32),
        Signal::SIGINT,
    )
    .unwrap();
    strace.wait().unwrap();
    std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("syncfs("))
        .count()
}

#[test]
fn with_sync_each_answer_waits_for_a_flush_and_without_it_none_is_made() {
    const LINES: usize = 5;
    for (extra, expected_at_least) in [(&["--sync"][..], LINES), (&[][..], 0)] {
        let dir = TempDir::new("sync-trace");
        let registry = Proc::registry(NO_HEARTBEAT);
        let log = Proc::host(
            &plugin("log"),
            &registry,
            &[&["--dir", dir.path().to_str().unwrap()], extra].concat(),
        );
        let calls = syncfs_calls_during(log.pid(), || {
            // One at a time: each answer needs a flush that began after its
            // own write, so none can share one.
            for n in 0..LINES {
                assert_eq!(
                    post(&log.url("/log"), format!("line {n}").as_bytes()).status,
                    200
                );
            }
        });
        if expected_at_least == 0 {
            assert_eq!(calls, 0, "flushes without --sync");
        } else {
            assert!(
                calls >= expected_at_least,
                "{calls} flushes for {LINES} answers with --sync"
            );
        }
    }
}

/// gateway → visit → log under load, the in-memory registry killed and
/// restarted: not one request may fail. Hosts register again one after
/// another (gateway first, then visit, then log, by their heartbeat
/// timeouts), so each re-registration is answered by a registry that knows
/// less than the host does; a host that replaced its cache with such an
/// answer would lose live instances and answer 503 (or visit 500) until the
/// others registered again.
#[test]
fn a_registry_restart_under_load_fails_no_request() {
    let dir = TempDir::new("restart-load");
    let addr = free_addr().unwrap().to_string();
    let mut registry = Proc::registry_at(&addr, &[]);
    let _log = Proc::host(
        &plugin("log"),
        &registry,
        &[
            "--heartbeat-timeout",
            "3s",
            "--dir",
            dir.path().to_str().unwrap(),
        ],
    );
    let visit = Proc::host(&plugin("visit"), &registry, &["--heartbeat-timeout", "2s"]);
    let gateway = Proc::host(
        &plugin("gateway"),
        &registry,
        &["--heartbeat-timeout", "1s"],
    );
    let url = gateway.url("/visit/");
    assert!(poll_until(SETTLE, || get(&url).status == 200));

    let load = harness::load::Load::start(&url, 8);
    assert!(load.wait_for_more(100, SETTLE));
    registry.kill9();
    let registry = Proc::registry_at(&addr, &[]);
    assert!(
        poll_until(SETTLE, || ["log", "visit", "gateway"]
            .iter()
            .all(|s| registered(&registry, s).len() == 1)),
        "not every host registered again:\n{}",
        registry.log()
    );
    // Some more traffic once everything is back.
    assert!(load.wait_for_more(100, SETTLE));
    let (ok, failures) = load.stop();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across the restart, e.g. {:?}\n{}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)],
        gateway.log()
    );
    assert!(visit.log().contains("registering again"));
}

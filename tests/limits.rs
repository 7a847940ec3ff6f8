//! Bounds and hostile input: each limit answers with a clear status or a
//! one-line error, never a panic, a torn write or a request that waits
//! forever; and a client cannot speak for a service.

use std::time::Duration;

use harness::{Launch, Proc, TempDir, binary, get, plugin, poll_until, post, send, stub};

const SETTLE: Duration = Duration::from_secs(30);

/// The echo stub in a host, with its registry.
fn echo_host(extra: &[&str]) -> (Proc, Proc) {
    let registry = Proc::registry(&["--heartbeat-interval", "1h"]);
    let host = Proc::host(&stub("echo"), &registry, extra);
    (registry, host)
}

#[test]
fn a_log_line_is_written_whole_or_refused_with_413() {
    let registry = Proc::registry(&[]);
    let dir = TempDir::new("long-lines");
    let log = Proc::host(
        &plugin("log"),
        &registry,
        &["--dir", dir.path().to_str().unwrap()],
    );
    let file = dir.path().join("services.log");

    let reply = post(&log.url("/log"), &vec![b'x'; 100 * 1024]);
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(reply.text().contains("line too long"), "{}", reply.text());
    let written = std::fs::read(&file).unwrap_or_default();
    assert!(written.is_empty(), "{} bytes written", written.len());

    // The longest line that fits goes out whole, and the next one starts on
    // its own line.
    let mut size = 64 * 1024;
    loop {
        let reply = post(&log.url("/log"), &vec![b'y'; size]);
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 413, "{}", reply.text());
        size -= 1;
    }
    assert_eq!(post(&log.url("/log"), b"after").status, 200);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{}", &text[..text.len().min(200)]);
    assert!(lines[0].ends_with(&"y".repeat(size)));
    assert!(lines[1].ends_with(": after"), "{}", lines[1]);
}

#[test]
fn a_log_service_granted_no_directory_says_so() {
    let registry = Proc::registry(&[]);
    let log = Proc::host(&plugin("log"), &registry, &[]);
    let reply = post(&log.url("/log"), b"a line");
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        reply.text().contains("no directory granted") && reply.text().contains("--dir"),
        "{}",
        reply.text()
    );
}

/// A client that takes the host's only instance slot with `url` (a slow
/// request) and returns its answer. The test's own probes may take the
/// slot first and get this request refused: it is sent again until it is
/// not.
fn hold_the_slot(url: String) -> std::thread::JoinHandle<harness::Reply> {
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + SETTLE;
        loop {
            let reply = get(&url);
            if reply.status != 503 || std::time::Instant::now() > deadline {
                return reply;
            }
        }
    })
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_the_slot_holder_finishes() {
    let (_registry, host) = echo_host(&["--max-instances", "1", "--queue-timeout", "200ms"]);
    let holder = hold_the_slot(host.url("/sleep?ms=4000"));
    let mut busy = None;
    assert!(
        poll_until(SETTLE, || {
            let reply = get(&host.url("/version"));
            let full = reply.status == 503;
            busy = Some(reply);
            full
        }),
        "never busy: {:?}",
        busy.map(|r| r.status)
    );
    let busy = busy.unwrap();
    assert_eq!(busy.headers["retry-after"], "1");
    assert!(busy.text().contains("overloaded"), "{}", busy.text());
    assert_eq!(holder.join().unwrap().status, 200);
    assert_eq!(get(&host.url("/version")).status, 200);
}

#[test]
fn with_no_queue_a_busy_host_answers_503_at_once() {
    let (_registry, host) = echo_host(&["--max-instances", "1", "--max-queue", "0"]);
    let holder = hold_the_slot(host.url("/sleep?ms=3000"));
    assert!(poll_until(SETTLE, || get(&host.url("/version")).status == 503));
    assert_eq!(holder.join().unwrap().status, 200);
}

#[test]
fn any_number_of_headers_from_a_plugin_is_an_error_not_a_crash() {
    let (_registry, host) = echo_host(&[]);
    let reply = get(&host.url("/many-headers?n=40000"));
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        reply.text().contains("more than 100 headers"),
        "{}",
        reply.text()
    );
    let reply = get(&host.url("/many-headers?n=50"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(get(&host.url("/version")).status, 200);
}

#[test]
fn out_of_range_durations_are_refused_with_one_line_naming_the_flag() {
    for (flag, value) in [
        ("--request-timeout", "10000000y"),
        ("--request-timeout", "0s"),
        ("--call-timeout", "1000y"),
        ("--heartbeat-timeout", "0s"),
        ("--queue-timeout", "2h"),
    ] {
        let mut host = Launch::new("host", binary("host"))
            .arg("--plugin")
            .arg(stub("echo"))
            .args(["--addr", "127.0.0.1:0", flag, value])
            .spawn()
            .unwrap();
        let status = host.wait_exit(Duration::from_secs(30)).expect("host exits");
        assert!(!status.success(), "{flag} {value} was accepted");
        let log = host.log();
        let first = log.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error:") && first.contains(flag) && first.contains("range"),
            "{flag} {value}: {log}"
        );
    }
}

#[test]
fn a_client_cannot_log_in_another_services_name_through_the_gateway() {
    let registry = Proc::registry(&[]);
    let dir = TempDir::new("log-source");
    let _log = Proc::host(
        &plugin("log"),
        &registry,
        &["--dir", dir.path().to_str().unwrap()],
    );
    let gateway = Proc::host(&plugin("gateway"), &registry, &[]);
    assert!(poll_until(SETTLE, || {
        send(
            "POST",
            &gateway.url("/log"),
            &[("x-log-source", "visit")],
            b"forged",
        )
        .is_ok_and(|r| r.status == 200)
    }));
    let text = std::fs::read_to_string(dir.path().join("services.log")).unwrap();
    let line = text.lines().find(|l| l.ends_with(": forged")).unwrap();
    assert!(line.contains(" gateway: forged"), "{line}");
}

/// Reads what the server sends on `stream` until it closes, for `within` at
/// most; `None` if it is still open then.
fn read_until_closed(stream: &mut std::net::TcpStream, within: Duration) -> Option<String> {
    use std::io::Read;
    stream.set_read_timeout(Some(within)).unwrap();
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Some(String::from_utf8_lossy(&received).into_owned())
        }
        Err(_) => None,
    }
}

/// Fills every connection slot with clients that send nothing and one that
/// sends half a body; all are cut off, and a normal client is served.
fn slow_clients_are_cut_off(server: &Proc, normal: &str) {
    use std::io::Write;
    let mut idle: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(server.addr()).unwrap())
        .collect();
    let mut trickle = std::net::TcpStream::connect(server.addr()).unwrap();
    trickle
        .write_all(b"POST /services HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
        .unwrap();
    // With all four slots taken, this one is served once they are freed.
    let reply = get(&server.url(normal));
    assert_eq!(reply.status, 200, "{}", reply.text());
    for stream in &mut idle {
        let closed = read_until_closed(stream, Duration::from_secs(20));
        assert!(closed.is_some(), "an idle client was not cut off");
    }
    let answer = read_until_closed(&mut trickle, Duration::from_secs(20))
        .expect("a trickling client was not cut off");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

const SLOW_CLIENT_LIMITS: [&str; 6] = [
    "--max-connections",
    "4",
    "--header-timeout",
    "500ms",
    "--body-timeout",
    "500ms",
];

#[test]
fn the_registry_cuts_off_slow_clients_and_serves_the_others() {
    let registry = Proc::registry(&SLOW_CLIENT_LIMITS);
    slow_clients_are_cut_off(&registry, "/services");
}

#[test]
fn a_host_cuts_off_slow_clients_and_serves_the_others() {
    let (_registry, host) = echo_host(&SLOW_CLIENT_LIMITS);
    // The trickling client sends a notification, which the host reads
    // itself; the normal one reaches the plugin.
    slow_clients_are_cut_off(&host, "/version");
}

/// Once nearly every connection is taken, a client that connects and says
/// nothing is closed after `--busy-first-byte-timeout`, not after the whole
/// `--header-timeout`: a flood of silent clients delays a real one by about
/// that much (an audit saw 1,100 silent connections delay a new client
/// 9.4 s, most of the default 10 s).
#[test]
fn silent_clients_hold_the_last_connections_only_briefly() {
    use std::io::Write;
    let registry = Proc::registry(&[
        "--max-connections",
        "8",
        "--header-timeout",
        "30s",
        "--busy-first-byte-timeout",
        "500ms",
    ]);
    let _silent: Vec<std::net::TcpStream> = (0..8)
        .map(|_| std::net::TcpStream::connect(registry.addr()).unwrap())
        .collect();
    // A client of its own, not a pooled connection taken before the flood.
    let mut client = std::net::TcpStream::connect(registry.addr()).unwrap();
    client
        .write_all(b"GET /services HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let answer = read_until_closed(&mut client, Duration::from_secs(10))
        .expect("the client waited more than 10 s behind silent ones");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn state_beyond_its_limits_fails_the_request_and_keeps_the_rest() {
    let (_registry, host) = echo_host(&["--state-max-value", "1KiB", "--state-max-keys", "2"]);
    assert_eq!(get(&host.url("/set?key=a&size=1024")).status, 200);
    let reply = get(&host.url("/set?key=a&size=1025"));
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        host.wait_for_log("state.set refused", SETTLE),
        "{}",
        host.log()
    );
    assert_eq!(get(&host.url("/count")).text(), "1");
    assert_eq!(get(&host.url("/set?key=c")).status, 500);
    assert_eq!(get(&host.url("/count")).text(), "2");
}

/// The compiled entries in a cache directory.
fn cache_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|listing| {
            listing
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_cache_others_can_write_is_not_used_and_a_tampered_entry_is_not_loaded() {
    use std::os::unix::fs::PermissionsExt;
    let registry = Proc::registry(&["--heartbeat-interval", "1h"]);
    let shared = TempDir::new("cache-shared");
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let cache_arg = ["--cache-dir", shared.path().to_str().unwrap()];
    let host = Proc::host(&stub("echo"), &registry, &cache_arg);
    assert_eq!(get(&host.url("/version")).status, 200);
    assert!(
        host.log().contains("writable by no one else; not caching"),
        "{}",
        host.log()
    );
    assert!(cache_entries(shared.path()).is_empty());
    drop(host);

    let private = TempDir::new("cache-private");
    let cache_arg = ["--cache-dir", private.path().to_str().unwrap()];
    drop(Proc::host(&stub("echo"), &registry, &cache_arg));
    let entries = cache_entries(private.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut compiled = std::fs::read(&entries[0]).unwrap();
    let middle = compiled.len() / 2;
    compiled[middle] ^= 0xff;
    std::fs::write(&entries[0], compiled).unwrap();
    let host = Proc::host(&stub("echo"), &registry, &cache_arg);
    assert_eq!(get(&host.url("/version")).status, 200);
    assert!(
        host.log().contains("does not match its checksum"),
        "{}",
        host.log()
    );
    assert!(
        !host.log().contains("taken from the cache"),
        "{}",
        host.log()
    );
}

#[test]
fn an_instance_gets_the_memory_limit_it_is_given() {
    for limit_mib in [16u64, 40] {
        let limit = format!("{limit_mib}MiB");
        let (_registry, host) = echo_host(&["--memory-limit", &limit]);
        assert_eq!(get(&host.url("/hog?report=1")).status, 500);
        let reached = host
            .log()
            .lines()
            .filter_map(|l| l.split("hog reached ").nth(1))
            .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        // The stack, data and allocator's own use take a few MiB of it.
        assert!(
            reached < limit_mib && reached + 8 >= limit_mib,
            "with --memory-limit {limit} the hog reached {reached} MiB"
        );
    }
}

/// Asks `server` to take a 10 GB body at `path` (`Expect: 100-continue`)
/// and returns the first line it answers.
fn first_answer_to_a_huge_declared_body(server: &Proc, path: &str) -> String {
    use std::io::{BufRead, Write};
    let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 10000000000\r\n\r\n"
    )
    .unwrap();
    // Well under the default body timeout (30 s), which a server that
    // invites the body would wait for.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    let _ = std::io::BufReader::new(stream).read_line(&mut line);
    line
}

#[test]
fn a_body_declared_too_large_is_refused_before_it_is_sent() {
    let (registry, host) = echo_host(&[]);
    for (server, path) in [(&registry, "/services"), (&host, "/echo")] {
        let line = first_answer_to_a_huge_declared_body(server, path);
        assert!(line.starts_with("HTTP/1.1 413"), "{path}: {line:?}");
    }
}

/// Past `--max-connections`, connections wait in the kernel's queue, as
/// many as `--backlog` (1024 by default) rather than the 128 that a plain
/// `listen` gives: a burst of clients is held, not dropped.
#[test]
fn connections_past_the_served_ones_wait_in_the_backlog() {
    const CLIENTS: usize = 300;
    let registry = Proc::registry(&["--max-connections", "1", "--header-timeout", "1h"]);
    let addr = registry.addr();
    let held: Vec<std::net::TcpStream> = (0..CLIENTS)
        .map_while(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
        .collect();
    assert_eq!(held.len(), CLIENTS);
}

/// The one `error:` line `program` (`host` or `registry`) exits with, run
/// with `args`; fails when it does not exit, or exits 0.
fn refusal(program: &str, args: &[&str]) -> String {
    let mut proc = Launch::new(program, binary(program))
        .args(args)
        .spawn()
        .unwrap();
    let status = proc.wait_exit(SETTLE).expect("a refused start exits");
    assert!(!status.success(), "{program} {args:?} was accepted");
    let log = proc.log();
    let line = log.lines().find(|l| l.starts_with("error:"));
    line.unwrap_or_else(|| panic!("{program} {args:?}: no error line: {log}"))
        .to_owned()
}

#[test]
fn zero_negative_and_decimal_sizes_are_refused_with_one_line_naming_the_flag() {
    let echo = stub("echo");
    let host = |flag: &'static str, value: &'static str| {
        let plugin = echo.to_str().unwrap();
        // Were the value taken, the host would end at once, unregistered.
        let args = [
            "--plugin",
            plugin,
            "--addr",
            "127.0.0.1:0",
            "--registry-wait",
            "0s",
            flag,
            value,
        ];
        (refusal("host", &args), flag, value)
    };
    let registry = |flag: &'static str, value: &'static str| {
        (
            refusal("registry", &["--addr", "127.0.0.1:0", flag, value]),
            flag,
            value,
        )
    };
    for (line, flag, value) in [
        host("--max-body", "0"),
        host("--state-max-key", "0"),
        host("--state-max-value", "0"),
        host("--cache-max", "0"),
        host("--max-body", "-1"),
        host("--max-instances", "-1"),
        host("--heartbeat-timeout", "-5s"),
        host("--max-connections", "-1"),
        registry("--heartbeat-interval", "-5s"),
        registry("--max-connections", "-1"),
    ] {
        assert!(
            line.contains(&format!("'{value}' for '{flag}")),
            "{flag} {value}: {line}"
        );
    }
    for value in ["10MB", "10kb", "10G"] {
        let (line, ..) = host("--max-body", value);
        assert!(
            line.contains("'--max-body") && line.contains("write KiB, MiB, GiB"),
            "{value}: {line}"
        );
    }
}

#[test]
fn a_listen_address_is_checked_as_the_flag_it_is_in_both_binaries() {
    let registry = refusal("registry", &["--addr", "nonsense"]);
    let plugin = stub("echo");
    let host = refusal(
        "host",
        &["--plugin", plugin.to_str().unwrap(), "--addr", "nonsense"],
    );
    for line in [registry, host] {
        assert!(
            line.contains("'nonsense' for '--addr") && line.contains("is not IP:PORT"),
            "{line}"
        );
    }
}

/// With `ulimit -n` so low that a few idle clients would take every
/// connection a process serves, neither binary starts; the line says which
/// limit, what it leaves and what is needed.
#[test]
fn an_open_file_limit_leaving_too_few_connections_refuses_the_start() {
    let echo = stub("echo");
    for (program, args) in [
        ("registry", vec!["--addr", "127.0.0.1:0"]),
        (
            "host",
            vec![
                "--plugin",
                echo.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
                "--no-cache",
            ],
        ),
    ] {
        // Soft and hard limit both: the binaries raise the soft one.
        let mut proc = Launch::new(program, "/bin/sh")
            .args(["-c", "ulimit -n 300 && exec \"$0\" \"$@\""])
            .arg(binary(program))
            .args(&args)
            .spawn()
            .unwrap();
        let status = proc.wait_exit(SETTLE).expect("a refused start exits");
        let log = proc.log();
        assert!(!status.success(), "{program} started: {log}");
        assert!(
            log.lines().any(|l| l.starts_with("error:")
                && l.contains("(ulimit -n) is 300")
                && l.contains("room for 44 connections")
                && l.contains("fewer than the 64")
                && l.contains("ulimit -n 320")),
            "{program}: {log}"
        );
    }
}

/// A journal written under higher limits loads whole, each record past the
/// lowered ones named in a warning; they only bound what is added.
#[test]
fn a_state_journal_past_lowered_limits_loads_whole_with_a_warning() {
    let dir = TempDir::new("state-lowered");
    let journal = dir.path().join("state.jsonl");
    let mut text: String = (0..20)
        .map(|n| format!("{{\"key\":\"k{n:02}\",\"value\":\"v\"}}\n"))
        .collect();
    text.push_str(&format!(
        "{{\"key\":\"big\",\"value\":\"{}\"}}\n",
        "x".repeat(100_000)
    ));
    std::fs::write(&journal, &text).unwrap();
    let state = journal.to_str().unwrap();
    let (_registry, host) = echo_host(&["--state", state, "--state-max-keys", "5"]);
    for needle in [
        "state.jsonl: 21 keys, more than --state-max-keys 5",
        "the value of key \"big\" of 100000 bytes, more than --state-max-value 65536",
    ] {
        assert!(
            host.log()
                .lines()
                .any(|l| l.contains("WARN") && l.contains(needle)),
            "{needle}: {}",
            host.log()
        );
    }
    // Every record kept, compacted; a kept key still changes, a new one is
    // refused.
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap().lines().count(),
        21
    );
    assert_eq!(get(&host.url("/set?key=k01&size=2")).status, 200);
    assert_eq!(get(&host.url("/count")).status, 500);
}

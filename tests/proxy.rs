//! Standard `wasi:http/proxy` components run as Sparrow services: answers
//! through the gateway, streamed bodies, failures that cost one request,
//! outgoing requests (to required services, refused elsewhere, stopped when
//! they loop), and hot swap between the two worlds under load.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::load::Load;
use harness::{
    Launch, Proc, ServiceSpec, TempDir, binary, get, install_atomically, plugin, poll_until, send,
    stub,
};

const SWAP_TIMEOUT: Duration = Duration::from_secs(30);

fn hello() -> std::path::PathBuf {
    plugin("hello-http")
}

#[test]
fn a_proxy_component_answers_through_the_gateway_intact() {
    let registry = Proc::registry(&[]);
    let service = Proc::host(&hello(), &registry, &["--name", "hello"]);
    let gateway = Proc::host(&plugin("gateway"), &registry, &[]);
    let _ = &service;

    let reply = get(&gateway.url("/hello/hello/bob"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hello, bob!\n");
    assert_eq!(reply.headers["x-hello"], "wasi:http/proxy");
    assert_eq!(reply.headers["content-type"], "text/plain; charset=utf-8");

    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let reply = send("POST", &gateway.url("/hello/echo"), &[], &body).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["x-echo-method"], "POST");
    assert_eq!(&reply.body[..], &body[..]);

    let reply = get(&gateway.url("/hello/nowhere"));
    assert_eq!(reply.status, 404);
}

/// Sends `GET path` on a fresh connection and reads the answer as it
/// comes: when the first and the last bytes of the body arrived, and how
/// many bytes came, calling `each` with the count as they grow.
fn read_streaming(
    host: &Proc,
    path: &str,
    mut each: impl FnMut(usize),
) -> (Duration, Duration, usize) {
    let mut stream = TcpStream::connect(host.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
        host.addr()
    )
    .unwrap();
    let started = Instant::now();
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = None;
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if first.is_none() {
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                assert!(
                    head.starts_with(b"HTTP/1.1 200"),
                    "{}",
                    String::from_utf8_lossy(&head)
                );
                if head.len() > end + 4 {
                    first = Some(started.elapsed());
                }
                total += head.len() - end - 4;
            }
            continue;
        }
        total += n;
        each(total);
    }
    (first.unwrap_or_default(), started.elapsed(), total)
}

#[test]
fn a_streaming_body_arrives_in_pieces() {
    let registry = Proc::registry(&[]);
    let host = Proc::host(&hello(), &registry, &["--name", "hello"]);
    // Five pieces, 300 ms apart: the first arrives long before the last.
    let (first, last, _) = read_streaming(&host, "/stream?chunks=5&size=100&pause=300", |_| {});
    assert!(
        last - first >= Duration::from_millis(900),
        "first piece at {first:?}, end at {last:?}: the body came whole"
    );
}

#[test]
fn a_big_streamed_answer_never_sits_whole_in_host_memory() {
    let registry = Proc::registry(&[]);
    let host = Proc::host(&hello(), &registry, &["--name", "hello"]);
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 1600; // 100 MiB
    let before = host.rss_bytes().unwrap();
    let mut peak = before;
    let mut next_look = 0;
    let (_, _, total) = read_streaming(
        &host,
        &format!("/stream?chunks={CHUNKS}&size={CHUNK}"),
        |total| {
            if total >= next_look {
                peak = peak.max(host.rss_bytes().unwrap());
                next_look = total + 8 * CHUNK * 16;
            }
        },
    );
    // Counted with the chunked encoding's framing.
    assert!(total >= CHUNK * CHUNKS, "{total} bytes came");
    assert!(
        peak - before < 48 << 20,
        "the host grew by {} MiB while sending 100 MiB",
        (peak - before) >> 20
    );
}

/// The hello component, with `--max-body 1KiB`, and its registry.
fn hello_with_a_1kib_bound() -> (Proc, Proc) {
    let registry = Proc::registry(&[]);
    let host = Proc::host(
        &hello(),
        &registry,
        &["--name", "hello", "--max-body", "1KiB"],
    );
    (registry, host)
}

#[test]
fn max_body_bounds_what_a_proxy_component_is_sent() {
    let (_registry, host) = hello_with_a_1kib_bound();
    let reply = send("POST", &host.url("/echo"), &[], &[b'a'; 1024]).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 1024);
    let reply = send("POST", &host.url("/echo"), &[], &[b'a'; 2048]).unwrap();
    assert_eq!(reply.status, 413, "{}", reply.text());
}

/// A body declared a little over `--max-body` (at most 1 MiB over) is read
/// and discarded before the 413, as for a plugin that reads its body whole:
/// a client that sends it whole reads its answer, and the connection goes
/// on to the next request.
#[test]
fn a_body_a_little_too_large_is_discarded_and_the_connection_goes_on() {
    let (_registry, host) = hello_with_a_1kib_bound();
    let mut stream = TcpStream::connect(host.addr()).unwrap();
    let body = vec![b'a'; 512 * 1024];
    write!(
        stream,
        "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body).unwrap();
    stream
        .write_all(b"GET /hello/next HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answers = Vec::new();
    let _ = stream.read_to_end(&mut answers);
    let answers = String::from_utf8_lossy(&answers);
    let statuses: Vec<&str> = answers
        .lines()
        .filter(|line| line.starts_with("HTTP/1.1 "))
        .collect();
    assert_eq!(
        statuses,
        ["HTTP/1.1 413 Payload Too Large", "HTTP/1.1 200 OK"],
        "{answers}"
    );
}

/// A chunked body, so that no `Content-Length` tells the host it is too
/// big: the component is cut off where it passes `--max-body`, and fails.
/// The client gets 413 when the host still can answer, else a connection
/// that ends and a line in the host's log; never a silent close.
#[test]
fn a_streamed_body_over_max_body_fails_visibly() {
    let (_registry, host) = hello_with_a_1kib_bound();
    let mut cut_short = 0;
    for _ in 0..5 {
        let mut stream = TcpStream::connect(host.addr()).unwrap();
        let chunk = vec![b'a'; 5000];
        write!(
            stream,
            "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n",
            chunk.len()
        )
        .unwrap();
        stream.write_all(&chunk).unwrap();
        stream.write_all(b"\r\n0\r\n\r\n").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        // 413 when the host could still answer (the client's body, not
        // the component, failed); else the connection ends, after the head
        // or before it was written, and the host says why.
        if !answer.starts_with("HTTP/1.1 413") {
            cut_short += 1;
            let logged = || {
                host.log()
                    .matches("component failed while sending its body")
                    .count()
            };
            assert!(
                poll_until(Duration::from_secs(10), || logged() == cut_short),
                "{answer:?}\n{}",
                host.log()
            );
        }
    }
}

#[test]
fn a_trap_or_a_spin_costs_one_request() {
    let registry = Proc::registry(&[]);
    let host = Proc::host(
        &stub("http-faults"),
        &registry,
        &["--name", "faults", "--request-timeout", "500ms"],
    );
    let reply = get(&host.url("/trap"));
    assert_eq!(reply.status, 500, "{}", reply.text());
    let started = Instant::now();
    let reply = get(&host.url("/spin"));
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_secs(5));
    let reply = get(&host.url("/hello/after"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "Hello, after!\n");
    let log = host.log();
    assert!(log.contains("asked to trap"), "{log}");
}

/// Requests RFC 9112 has a server refuse (an HTTP/1.1 request without a
/// valid Host, a target that is no path) and bodies that are no valid HTTP
/// get 400 before, or whatever, the component does: they are the client's
/// failures, never counted as the component's. An HTTP/1.0 request without
/// Host is served: the component gets the host's address as authority.
#[test]
fn malformed_requests_are_the_clients_400_not_the_components_failure() {
    let registry = Proc::registry(&[]);
    let host = Proc::host(
        &hello(),
        &registry,
        &["--name", "hello", "--metrics-addr", "127.0.0.1:0"],
    );
    let addr = host.addr().to_string();
    let status = |request: &str| {
        let (answer, _) = raw_exchange(&addr, request.as_bytes());
        let text = String::from_utf8_lossy(&answer).into_owned();
        (text.get(9..12).unwrap_or_default().to_owned(), text)
    };
    let (code, text) = status("GET /hello/old HTTP/1.0\r\n\r\n");
    assert_eq!(code, "200", "{text}");
    assert!(text.ends_with("Hello, old!\n"), "{text}");
    for bad in [
        "GET /hello/a HTTP/1.1\r\nconnection: close\r\n\r\n",
        "GET /hello/a HTTP/1.1\r\nhost: a b\r\nconnection: close\r\n\r\n",
        "GET /hello/a HTTP/1.1\r\nhost: h\r\nhost: h\r\nconnection: close\r\n\r\n",
        "GET 127.0.0.1:9 HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n",
        "CONNECT 127.0.0.1:9 HTTP/1.1\r\nhost: 127.0.0.1:9\r\nconnection: close\r\n\r\n",
        "POST /echo HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\nZZ\r\nabc\r\n",
    ] {
        let (code, text) = status(bad);
        assert_eq!(code, "400", "{bad:?}:\n{text}");
    }
    let metrics = get(&format!(
        "http://{}/metrics",
        harness::listening::parse_metrics(&host.log()).unwrap()
    ))
    .text();
    let failures = metrics
        .lines()
        .filter(|line| line.starts_with("sparrow_host_plugin_failures_total{"));
    for line in failures {
        assert!(line.ends_with(" 0"), "{line}");
    }
}

/// Writes `request` on a fresh connection to `host`, keeps the connection
/// open, and reads what comes back until the host ends it (cleanly or
/// not): the bytes, and how long it took.
fn raw_exchange(host: &str, request: &[u8]) -> (Vec<u8>, Duration) {
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    // A connection the host aborts may end with a reset rather than an end
    // of file: either way, what came is the answer.
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    (answer, started.elapsed())
}

/// Whether a raw HTTP/1.1 answer is whole: a chunked body with its last
/// chunk, or as many bytes as its `Content-Length` says.
fn whole(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let body = &answer[end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|len| len.trim().parse::<usize>().ok());
    length == Some(body.len())
}

/// A streamed body still going at `--request-timeout` is cut short: the
/// client sees a transfer that did not end (no last chunk), never a
/// shorter body passed off as whole; a Sparrow caller reading it, in
/// process or over HTTP, gets a failure rather than a short success.
#[test]
fn a_body_cut_at_the_request_timeout_never_ends_as_if_whole() {
    let registry = Proc::registry(&[]);
    // Ten seconds of body, cut at one.
    let path = "/stream?chunks=100&size=10&pause=100";
    let host = Proc::host(
        &stub("http-faults"),
        &registry,
        &["--name", "alone", "--request-timeout", "1s"],
    );
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let (answer, took) = raw_exchange(&host.addr().to_string(), request.as_bytes());
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!whole(&answer), "the cut body ended as if whole:\n{text}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(
        host.wait_for_log(
            "component failed while sending its body",
            Duration::from_secs(10)
        ),
        "{}",
        host.log()
    );

    // Through a gateway: one in the stub's process (the call in process),
    // one of its own (the call over HTTP).
    let dir = TempDir::new("proxy-cut");
    let faults = ServiceSpec::new(&stub("http-faults"))
        .option("name", "faults")
        .option("request-timeout", "1s");
    let local_gateway = ServiceSpec::new(&plugin("gateway"));
    let _multi = Proc::multi_host(
        &dir.join("services.toml"),
        &[faults, local_gateway.clone()],
        &registry,
        &[],
    );
    let remote_gateway = Proc::host(&plugin("gateway"), &registry, &[]);
    for (via, gateway) in [
        ("in process", local_gateway.url("")),
        ("over HTTP", remote_gateway.url("")),
    ] {
        // Once the gateway knows the service.
        let greeting = format!("{gateway}/faults/hello/x");
        assert!(poll_until(SWAP_TIMEOUT, || get(&greeting).status == 200));
        let reply = send("GET", &format!("{gateway}/faults{path}"), &[], b"").unwrap();
        assert!(
            reply.status == 502 || reply.status == 500,
            "{via}: {} {} bytes: {}",
            reply.status,
            reply.body.len(),
            reply.text()
        );
    }
}

/// `--body-timeout` holds for a standard component as for any plugin: a
/// client that stops sending its body fails its own request at the
/// timeout, and the instance it held frees its slot then, not at the
/// request timeout.
#[test]
fn a_stalled_body_frees_its_slot_at_the_body_timeout() {
    let registry = Proc::registry(&[]);
    let host = Proc::host(
        &stub("http-faults"),
        &registry,
        &[
            "--name",
            "faults",
            "--body-timeout",
            "1s",
            "--request-timeout",
            "15s",
            "--max-instances",
            "1",
            "--queue-timeout",
            "10s",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let metrics = harness::listening::parse_metrics(&host.log()).expect("a metrics address");
    let in_use = format!("http://{metrics}/metrics");
    let addr = host.addr().to_string();
    let stalled = std::thread::spawn(move || {
        // Ten bytes of the hundred promised, then nothing more.
        let request = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789";
        raw_exchange(&addr, request)
    });
    // The stalled request takes the only slot first.
    let held = "sparrow_host_instances_in_use{service=\"faults\"} 1\n";
    assert!(
        poll_until(Duration::from_secs(10), || get(&in_use)
            .text()
            .contains(held)),
        "{}",
        host.log()
    );
    let started = Instant::now();
    let reply = get(&host.url("/hello/next"));
    let waited = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        waited < Duration::from_secs(5),
        "the next request waited {waited:?} for the slot"
    );
    let (answer, took) = stalled.join().unwrap();
    let text = String::from_utf8_lossy(&answer);
    // 408 when the host could still answer; else an answer cut short.
    assert!(
        text.starts_with("HTTP/1.1 408") || (text.starts_with("HTTP/1.1 200") && !whole(&answer)),
        "{text}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}: {text}");
}

#[test]
fn a_proxy_component_needs_a_name_and_other_worlds_are_refused() {
    let refused = |plugin: &Path, extra: &[&str]| {
        let mut host = Launch::new("host", binary("host"))
            .arg("--plugin")
            .arg(plugin)
            .args(["--addr", "127.0.0.1:0", "--registry", "http://127.0.0.1:9"])
            .args(extra)
            .spawn()
            .unwrap();
        let status = host.wait_exit(Duration::from_secs(30)).expect("host exits");
        assert!(!status.success());
        host.log().lines().last().unwrap_or_default().to_owned()
    };
    let line = refused(&hello(), &[]);
    assert!(line.contains("give --name"), "{line}");
    let line = refused(&stub("other-world"), &["--name", "x"]);
    assert!(
        line.contains("sparrow:service/service@0.1.1") && line.contains("wasi:http/proxy"),
        "{line}"
    );
}

#[test]
fn outgoing_requests_reach_required_services_and_nothing_else() {
    let registry = Proc::registry(&[]);
    let echo = Proc::host(&stub("echo"), &registry, &[]);
    let caller = Proc::host(
        &hello(),
        &registry,
        &["--name", "caller", "--requires", "echo"],
    );
    let reply = get(&caller.url("/call/echo/version"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "v1");

    // The same instance by its address: not declared, refused, and the
    // component hears it as an error of its request.
    let reply = get(&caller.url(&format!("/call/{}/version", echo.addr())));
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        reply.text().contains("HttpRequestDenied"),
        "{}",
        reply.text()
    );

    // Allowed by the command line, it goes through.
    let allowed = Proc::host(
        &hello(),
        &registry,
        &[
            "--name",
            "allowed",
            "--allow-outbound",
            &echo.addr().to_string(),
        ],
    );
    let reply = get(&allowed.url(&format!("/call/{}/version", echo.addr())));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "v1");
}

/// `--call-timeout` bounds a call to an `--allow-outbound` address whole:
/// an answer whose body stalls fails the component's read at the call
/// timeout, not at the request timeout.
#[test]
fn a_stalled_answer_body_fails_at_the_call_timeout() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    // Answers every request with 3 of the 1000 bytes it announces, then
    // holds the connection, until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in server.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc");
            held.push(stream);
        }
    });
    let registry = Proc::registry(&[]);
    let caller = Proc::host(
        &hello(),
        &registry,
        &[
            "--name",
            "caller",
            "--allow-outbound",
            &addr.to_string(),
            "--call-timeout",
            "1s",
            "--request-timeout",
            "20s",
        ],
    );
    let sent = Instant::now();
    let reply = get(&caller.url(&format!("/call/{addr}/slow")));
    let took = sent.elapsed();
    assert_ne!(reply.status, 200, "{}", reply.text());
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
}

#[test]
fn a_call_chain_that_loops_is_stopped() {
    let registry = Proc::registry(&[]);
    let ping = Proc::host(
        &hello(),
        &registry,
        &["--name", "ping", "--requires", "pong"],
    );
    let _pong = Proc::host(
        &hello(),
        &registry,
        &["--name", "pong", "--requires", "ping"],
    );
    // ping hears of pong from the registry's notification.
    assert!(
        poll_until(SWAP_TIMEOUT, || get(&ping.url("/call/pong/hello/x")).status
            == 200),
        "{}",
        ping.log()
    );
    // Each hop calls the other service with one step less: twelve of them
    // would run past the bound of ten hops.
    let path = format!("/{}hello/end", "call/pong/call/ping/".repeat(6));
    let reply = get(&ping.url(&path));
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(reply.text().contains("LoopDetected"), "{}", reply.text());
    // A shorter chain is no loop.
    let path = format!("/{}hello/end", "call/pong/call/ping/".repeat(2));
    let reply = get(&ping.url(&path));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hello, end!\n");
}

#[test]
fn hot_swap_between_the_two_worlds_under_load_fails_no_request() {
    let dir = TempDir::new("proxy-swap");
    let file = dir.join("plugin.wasm");
    std::fs::copy(stub("echo"), &file).unwrap();
    let cache = dir.join("cache");
    let registry = Proc::registry(&[]);
    let host = Proc::host(
        &file,
        &registry,
        &["--name", "svc", "--cache-dir", cache.to_str().unwrap()],
    );
    let url = host.url("/hello/load");
    let load = Load::start(&url, 4);
    assert!(load.wait_for_more(50, SWAP_TIMEOUT));

    let greets = || get(&url).text() == "Hello, load!\n";
    for round in 0..2 {
        install_atomically(&hello(), &file);
        assert!(
            poll_until(SWAP_TIMEOUT, greets),
            "round {round}: never swapped to the proxy component:\n{}",
            host.log()
        );
        assert!(load.wait_for_more(50, SWAP_TIMEOUT));
        install_atomically(&stub("echo"), &file);
        assert!(
            poll_until(SWAP_TIMEOUT, || !greets()),
            "round {round}: never swapped back:\n{}",
            host.log()
        );
        assert!(load.wait_for_more(50, SWAP_TIMEOUT));
    }
    let (ok, failures) = load.stop();
    assert!(
        failures.is_empty(),
        "{} of {} failed: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
}

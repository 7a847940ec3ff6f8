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
    Launch, Proc, TempDir, binary, get, install_atomically, plugin, poll_until, send, stub,
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

/// A chunked body, so that no `Content-Length` tells the host it is too
/// big: the component is cut off where it passes `--max-body`, and fails.
/// The client gets that failure as a status when the host still can give
/// one, else a connection that ends and a line in the host's log; never a
/// silent close.
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
        // 500 when the host could still answer the failure; else the
        // connection ends, after the head or before it was written, and
        // the host says why.
        if !answer.starts_with("HTTP/1.1 500") {
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

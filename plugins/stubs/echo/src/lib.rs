//! Test stub: echoes requests, and misbehaves on demand, so that the host's
//! tests can check what a faulty plugin costs.
//!
//! | path | what it does |
//! |---|---|
//! | `/trap` | panics (a trap) |
//! | `/loop` | spins forever |
//! | `/hog` | allocates memory without end (`?report=1`: says how far on stderr) |
//! | `/recurse` | recurses without end (stack overflow) |
//! | `/sleep?ms=N` | sleeps N ms, then answers |
//! | `/static` | bumps a static counter and answers it (always 1 if instances are fresh) |
//! | `/read?path=P` | answers the contents of file P, or 500 with the error |
//! | `/connect?addr=A` | opens a TCP connection to A (which the host must refuse) |
//! | `/env` | answers the number of environment variables it sees |
//! | `/headers` | answers every request header as `name: value` lines |
//! | `/count` | increments the host-kept counter `count` and answers it |
//! | `/set?key=K&size=N` | sets state `K` to N bytes |
//! | `/many-headers?n=N` | answers N headers |
//! | `/version` | answers the version it was built as (`STUB_VERSION`, default `v1`) |
//! | `/call/{service}/...` | calls `{service}` with the rest of the path through the host |
//! | anything else | 200, the body echoed, `x-echo-method` and `x-echo-path` set |
//!
//! Paths may also start with `/echo` (as they do behind a gateway).
//!
//! Its description requires what `STUB_REQUIRES` (comma-separated) said at
//! build time, nothing by default; with `STUB_DESCRIBE=sleep`, `describe`
//! sleeps for an hour (a version that never finishes loading).

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

use sparrow_plugin::services::call_service;
use sparrow_plugin::{Description, Guest, Header, Request, Response, state};

const VERSION: &str = match option_env!("STUB_VERSION") {
    Some(v) => v,
    None => "v1",
};

static STATIC_COUNTER: AtomicU32 = AtomicU32::new(0);

struct Echo;

impl Guest for Echo {
    fn describe() -> Description {
        if option_env!("STUB_DESCRIBE") == Some("sleep") {
            // Waits on the host, where epoch interruption cannot reach it.
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        Description {
            name: "echo".into(),
            requires: option_env!("STUB_REQUIRES")
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        }
    }

    fn handle_request(request: Request) -> Response {
        // Behind a gateway the path still starts with the service name.
        let path = request.path_only();
        let path = path
            .strip_prefix("/echo")
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(path);
        match path {
            "/trap" => panic!("stub trap requested"),
            "/loop" => spin(),
            "/hog" => hog(request.query("report").is_some()),
            "/recurse" => Response::text(200, recurse(black_box(1)).to_string()),
            "/sleep" => {
                let ms = request
                    .query("ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(100);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Response::text(200, format!("slept {ms} ms"))
            }
            "/static" => {
                let n = STATIC_COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
                Response::text(200, n.to_string())
            }
            "/read" => match std::fs::read_to_string(request.query("path").unwrap_or_default()) {
                Ok(contents) => Response::text(200, contents),
                Err(e) => Response::text(500, format!("read failed: {e}")),
            },
            "/env" => Response::text(200, std::env::vars().count().to_string()),
            "/connect" => {
                match std::net::TcpStream::connect(request.query("addr").unwrap_or_default()) {
                    Ok(_) => Response::text(200, "connected"),
                    Err(e) => Response::text(500, format!("connect failed: {e}")),
                }
            }
            "/headers" => Response::text(
                200,
                request
                    .headers
                    .iter()
                    .map(|h| format!("{}: {}\n", h.name, h.value))
                    .collect::<String>(),
            ),
            "/many-headers" => {
                let n = request
                    .query("n")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(40_000);
                let mut response = Response::text(200, format!("{n} headers"));
                response.headers = (0..n)
                    .map(|i| Header {
                        name: format!("x-h{i}"),
                        value: "v".into(),
                    })
                    .collect();
                response
            }
            "/set" => {
                let size = request
                    .query("size")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                state::set(request.query("key").unwrap_or("k"), &"x".repeat(size));
                Response::text(200, format!("set {size} bytes"))
            }
            "/version" => Response::text(200, VERSION),
            "/count" => match state::increment("count", 1) {
                Ok(n) => Response::text(200, n.to_string()),
                Err(e) => Response::text(500, e),
            },
            path if path.starts_with("/call/") => call(&request),
            _ => echo(request),
        }
    }
}

fn echo(request: Request) -> Response {
    let mut headers = vec![
        Header {
            name: "x-echo-method".into(),
            value: request.method.clone(),
        },
        Header {
            name: "x-echo-path".into(),
            value: request.path.clone(),
        },
    ];
    headers.extend(
        request
            .headers
            .into_iter()
            .filter(|h| h.name.starts_with("x-test-")),
    );
    Response {
        status: 200,
        headers,
        body: request.body,
    }
}

/// `/call/{service}/rest` -> `{service}` gets `/rest`.
fn call(request: &Request) -> Response {
    let rest = &request.path["/call/".len()..];
    let (service, path) = rest.split_once('/').unwrap_or((rest, ""));
    let forwarded = Request {
        method: request.method.clone(),
        path: format!("/{path}"),
        headers: request.headers.clone(),
        body: request.body.clone(),
    };
    match call_service(service, &forwarded) {
        Ok(response) => response,
        Err(e) => Response::text(502, format!("call failed: {e:?}")),
    }
}

fn spin() -> ! {
    let mut i = 0u64;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks until the memory limit stops it; with `report`,
/// says on stderr how far it got.
fn hog(report: bool) -> ! {
    let mut blocks = Vec::with_capacity(4096);
    loop {
        let block = vec![1u8; 1 << 20];
        blocks.push(black_box(block));
        if report {
            eprintln!("hog reached {} MiB", blocks.len());
        }
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [depth; 64];
    black_box(&mut frame);
    recurse(black_box(depth + 1)) + frame[7]
}

sparrow_plugin::export!(Echo);

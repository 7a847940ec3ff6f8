//! Benchmark plugin: answers every request with its body, and its method
//! and path in `x-echo-method` and `x-echo-path`; the answer of the `echo`
//! test stub, without the stub's misbehaviours.
//!
//! `bench --case host-overhead` measures the host with this plugin, because
//! what a fresh instance costs grows with what the component imports: the
//! `echo` stub reads files, opens sockets and calls other services, so its
//! component imports 27 interfaces (WASI filesystem and sockets among them);
//! this one imports what any Rust program does (14). The benchmark reports
//! both. It keeps the standard library, as the reference every earlier run
//! measured; a lean echo (docs/plugins.md, "Lean Rust plugins") costs the
//! host about a fifth less per request.

use sparrow_plugin::{Description, Guest, Header, Request, Response};

struct PlainEcho;

impl Guest for PlainEcho {
    fn describe() -> Description {
        Description {
            name: "echo".into(),
            requires: Vec::new(),
        }
    }

    fn handle_request(request: Request) -> Response {
        Response {
            status: 200,
            headers: vec![
                Header {
                    name: "x-echo-method".into(),
                    value: request.method,
                },
                Header {
                    name: "x-echo-path".into(),
                    value: request.path,
                },
            ],
            body: request.body,
        }
    }
}

sparrow_plugin::export!(PlainEcho);

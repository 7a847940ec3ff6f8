//! Benchmark plugin: answers every request with its body, and its method
//! and path in `x-echo-method` and `x-echo-path`; the answer of the `echo`
//! test stub, without the stub's misbehaviours.
//!
//! `bench --case host-overhead` measures the host with this plugin, because
//! what a fresh instance costs grows with what the component imports: the
//! `echo` stub reads files, opens sockets and calls other services, so its
//! component imports 27 interfaces (WASI filesystem and sockets among them);
//! this one is lean (docs/plugins.md, "Lean Rust plugins") and imports only
//! Sparrow's types, like the log, visit and gateway plugins it is compared
//! with. The benchmark reports both.

#![no_std]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

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

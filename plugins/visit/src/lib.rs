//! The visit service: every request counts one visit, writes the new count
//! through the log service and answers it as text.
//!
//! The counter lives in the host's key-value state, not in this instance:
//! each request runs in a fresh instance, and the count must survive plugin
//! swaps.

// Lean: no standard library, so its component imports no WASI interface
// (docs/plugins.md, "Lean Rust plugins").
#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::ToString;
use alloc::vec;

use sparrow_plugin::{Description, Guest, Request, Response, log, state};

const COUNTER: &str = "visits";

struct Visit;

impl Guest for Visit {
    fn describe() -> Description {
        Description {
            name: "visit".into(),
            requires: vec!["log".into()],
        }
    }

    fn handle_request(_request: Request) -> Response {
        let count = match state::increment(COUNTER, 1) {
            Ok(count) => count,
            Err(e) => return Response::text(500, format!("cannot count the visit: {e}")),
        };
        if let Err(e) = log::log_println(&count.to_string()) {
            // The caller gets why, and the host logs the failed line.
            return Response::text(500, format!("cannot log visit {count}: {e}"));
        }
        Response::text(200, count.to_string())
    }
}

sparrow_plugin::export!(Visit);

//! What the host offers a plugin: one module per interface of the
//! `sparrow:service` world, each implementing its generated `Host` trait on
//! the request's store data, and `http`, the outgoing requests of a
//! standard `wasi:http/proxy` component.
//!
//! A plugin reaches only the services it declared it requires; the checks
//! live here, next to each capability, not in the plugin.

mod files;
pub mod http;
mod log;
mod lookup;
mod services;
mod state;

use crate::metrics::CallOutcome;
use crate::outbound::{Answer, CallFailure};
use crate::plugin::bindings::sparrow::service::types;
use crate::plugin::context::RequestCtx;

// `types` declares no functions, but the linker still asks for its trait.
impl types::Host for RequestCtx {}

/// What a call's result counts as in the metrics.
fn outcome(answer: &Result<Answer, CallFailure>) -> CallOutcome {
    match answer {
        Ok(_) => CallOutcome::Answered,
        Err(CallFailure::NoInstance) => CallOutcome::NoInstance,
        Err(CallFailure::Unreachable(_)) => CallOutcome::Unreachable,
        Err(CallFailure::Timeout) => CallOutcome::Timeout,
    }
}

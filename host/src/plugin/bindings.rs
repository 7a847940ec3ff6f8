//! The Rust side of the WIT contract in `wit/service.wit`.
//!
//! Imports that wait on the network are async so that a plugin waiting on
//! another service does not hold a runtime thread; the others are plain
//! functions.

wasmtime::component::bindgen!({
    world: "service",
    path: "../wit",
    imports: {
        "sparrow:service/log": async,
        "sparrow:service/services": async,
        "sparrow:service/state.set": trappable,
    },
    exports: { default: async },
});

pub use sparrow::service::types::{CallError, Header};

/// The WIT package and version this host serves, for messages.
pub const WORLD: &str = "sparrow:service/service@0.1.1";

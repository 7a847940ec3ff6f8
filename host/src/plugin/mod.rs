//! Running plugins: the wasmtime engine, loading and checking a component,
//! and serving one request in a fresh, bounded instance.
//!
//! - [`bindings`]: the Rust side of `wit/service.wit`.
//! - [`engine`]: one engine per host, its pooling allocator and the epoch
//!   ticker that enforces request timeouts.
//! - [`context`]: what a store holds for one request.
//! - [`loader`]: file -> checked, pre-instantiated plugin.
//! - [`sandbox`]: one request in a fresh instance, with its limits, and what
//!   became of it.
//! - [`stdio`]: the plugin's stdout and stderr, into the host's log.

pub mod bindings;
pub mod context;
pub mod engine;
pub mod loader;
pub mod sandbox;
mod stdio;

pub use context::{ServiceEnv, Shared};
pub use engine::{PluginEngine, SandboxSettings};
pub use loader::Plugin;
pub use sandbox::Failure;

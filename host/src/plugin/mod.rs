//! Running plugins: the wasmtime engine, loading and checking a component,
//! and serving one request in a bounded instance.
//!
//! - [`bindings`]: the Rust side of `wit/service.wit`.
//! - [`engine`]: one engine per host, its pooling allocator, the epoch
//!   ticker that enforces request timeouts, and the instance slots.
//! - [`context`]: what a store holds for one request.
//! - [`sandbox`]: one instance's store and limits, and what became of a
//!   call into it.
//! - [`pool`]: fresh instances, or reused ones with `--reuse`.
//! - [`cache`]: compiled plugins on disk, private and bounded.
//! - [`proxy`]: a standard `wasi:http/proxy` component, serving one
//!   request with streaming bodies.
//! - [`loader`]: file -> checked, compiled, linked (for the world it
//!   exports), described plugin.
//! - [`loaded`]: a loaded plugin version of either kind, serving one request.
//! - [`stdio`]: the plugin's stdout and stderr, into the host's log.
//!
//! The modules depend on each other in that order only.

pub mod bindings;
mod cache;
pub mod context;
pub mod engine;
pub mod loaded;
pub mod loader;
mod pool;
pub mod proxy;
pub mod sandbox;
mod stdio;

pub use cache::CompileCache;
pub use context::{OutgoingSettings, ServiceEnv, Shared};
pub use engine::{EngineCore, PluginEngine};
pub use loaded::Plugin;
pub use sandbox::{Failure, GrantedDir, SandboxSettings};

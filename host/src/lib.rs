//! The Sparrow host: runs one service (or several, `--config`), whose logic is a WebAssembly
//! component (the plugin); everything around it is native and lives here.
//!
//! - [`cli`]: the command line, which is also the configuration.
//! - [`config`]: `--config FILE`, the services of one process in TOML.
//! - [`control`]: what stops the host or reloads its plugin (signals in the
//!   binary, a [`Controller`] in tests).
//! - [`precompile`]: `host compile`, filling the compiled-plugin cache ahead
//!   of a swap.
//! - [`service`]: the life of the service, from start to drained stop:
//!   [`serve`], or [`Host::start`] then [`Host::run`].
//! - `server`: the HTTP side, routing protocol endpoints to `discovery` and
//!   everything else to the plugin.
//! - `discovery`: registration with the registry, the instance cache, the
//!   `/heart-beat` and `/services` endpoints of the protocol.
//! - `plugin`: the wasmtime engine, loading a component, and running one
//!   request in a bounded instance.
//! - `capabilities`: what the host offers a plugin, one module per WIT
//!   interface.
//! - `outbound`: calls from the host to other services.
//! - `local`: calls to services of this same process, in process.
//! - `metrics`: what `--metrics-addr` serves, and the counters behind it.
//! - `trace`: W3C trace context across hops, and the span of a request.
//! - `durability`: `--sync`, flushing the plugin's writes before answering.
//! - `kv`: the key-value state kept for the plugin.
//! - `appends`: the files of `--dir` held open for the plugin's appends.
//! - `swap`: hot swap of the plugin while the host serves.

pub mod cli;
pub mod config;
pub mod control;
pub mod precompile;
pub mod service;

mod appends;
mod capabilities;
mod discovery;
mod durability;
mod kv;
mod local;
mod metrics;
mod outbound;
mod plugin;
mod server;
mod swap;
mod trace;

pub use cli::{Cli, CompileCli};
pub use control::{Control, Controller, Signals, control};
pub use precompile::compile;
pub use service::{Host, Hosts, serve};

//! Sparrow's service registry server: the table of service instances, the
//! heartbeat that checks them, and the notifications that tell dependents
//! when an instance comes or goes.
//!
//! The wire protocol (shared with the host) lives in the `protocol` crate;
//! it is the original Go registry's, kept byte-compatible. The modules here
//! say what behaviour we fixed.
//!
//! - [`config`]: the tunables, from the command line.
//! - [`server`]: start, serve, stop.
//! - `api`: routing and one handler per operation.
//! - `table`: the instances, who depends on whom, and what changed.
//! - `heartbeat`: the sweeps that check instances and evict dead ones.
//! - `notify`: telling dependents, concurrently and in order per dependent.
//! - `metrics`: what `GET /metrics` answers, and the hooks that feed it.
//! - `page`: the live page on `GET /` and the data it polls.

pub mod config;
pub mod server;

mod api;
mod heartbeat;
mod metrics;
mod notify;
mod page;
mod table;

pub use config::Config;
pub use server::serve;

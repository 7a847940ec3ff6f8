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
//! - `store`: where the table lives (memory, or etcd shared by replicas),
//!   and the table itself: the instances, who depends on whom.
//! - `leader`: which etcd-backed replica runs the heartbeat sweeps.
//! - `heartbeat`: the sweeps that check instances and evict dead ones.
//! - `notify`: telling dependents, concurrently, in order per instance, with
//!   bounded queues.
//! - `metrics`: what `GET /metrics` answers, and the hooks that feed it.
//! - `page`: the live page on `GET /` and the data it polls.

pub mod config;
pub mod server;

mod api;
mod heartbeat;
mod leader;
mod metrics;
mod notify;
mod page;
mod store;

pub use config::Config;
pub use server::{ServeError, serve};

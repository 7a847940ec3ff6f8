//! Sparrow's service registry: the server that keeps the table of service
//! instances, and the pieces of its protocol that services (the host) share
//! with it — the service record, HTTP body helpers, a registry client and the
//! local instance cache.
//!
//! The wire protocol is the one of the original Go registry
//! (`POST`/`DELETE /services`, `GET /heart-beat`), kept byte-compatible; see
//! the server modules for the behaviour we fixed.

pub mod auth;
pub mod body;
pub mod cache;
pub mod client;
pub mod config;
pub mod heartbeat;
pub mod listening;
pub mod notify;
pub mod record;
pub mod server;
pub mod table;

mod api;
mod sync;

pub use config::Config;
pub use record::{Instances, ServiceRecord};
pub use server::serve;

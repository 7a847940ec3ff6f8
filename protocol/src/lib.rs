//! What Sparrow's registry and its services (the host) share: the pieces of
//! the wire protocol both sides speak, and the plumbing both servers need.
//!
//! The protocol is the one of the original Go registry (`POST`/`DELETE
//! /services`, `GET /heart-beat`), kept byte-compatible.
//!
//! - [`record`]: the service record, as it travels on the wire.
//! - [`token`]: the optional shared secret on writes and notifications.
//! - [`body`]: bounded reading of bodies, one-line and JSON answers.
//! - [`duration`]: durations on the command line, within bounds.
//! - [`http`]: the pooled HTTP client, sending with a deadline, and what a
//!   failed exchange means (refused: never sent; broken: maybe sent).
//! - [`registry_client`]: registering and deregistering with a registry.
//! - [`accept`]: the accept loop every server runs, with its drain rules.
//! - [`listening`]: the `listening on ADDR` line, written and read back.
//! - [`locks`]: lock helpers that ignore poisoning.
//! - [`essential`]: the background tasks a server stops without.
//! - [`metrics`]: a histogram in atomics and the Prometheus text answer.

pub mod accept;
pub mod body;
pub mod duration;
pub mod essential;
pub mod http;
pub mod listening;
pub mod locks;
pub mod metrics;
pub mod record;
pub mod registry_client;
pub mod token;

pub use record::{Instances, ServiceRecord};

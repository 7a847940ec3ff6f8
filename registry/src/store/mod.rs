//! Where the registry's table lives, behind one small trait: in this
//! process's memory ([`memory`], the default), or in etcd ([`etcd`], shared
//! by several registry replicas).
//!
//! Both keep a [`Table`] in memory: the in-memory store's is the truth; the
//! etcd store's is a copy that its watch keeps current. Reads, the heartbeat
//! sweeps' targets and the notifications of dependents come from that table
//! either way; what differs is how a write reaches it: directly, or through
//! etcd and back by the watch.

pub mod etcd;
pub mod memory;
mod roster;
pub mod table;

use std::future::Future;

use protocol::record::{Instances, ServiceRecord};

pub use table::{Full, InstanceView, Limits, RegistrationId, TABLE_BUDGET, Table, Target};

/// The table's home. Writes may fail (etcd unreachable); reads never do,
/// they come from the local [`Table`].
pub trait Store: Send + Sync + 'static {
    /// The local table: reads, heartbeat targets and health.
    fn table(&self) -> &Table;

    /// Adds or replaces (`Name`, `Addr`); answers the instances of every
    /// service the record requires, as of this write.
    fn register(
        &self,
        record: ServiceRecord,
    ) -> impl Future<Output = Result<Registered, StoreError>> + Send;

    /// Removes (`Name`, `Addr`); whether it was there.
    fn deregister(
        &self,
        record: &ServiceRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes the instance if it is still the registration the heartbeat
    /// checked; whether it did.
    fn evict(&self, target: &Target) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether reads may be behind the table's truth by more than the usual
    /// moment (the etcd store while it has lost its watch).
    fn stale(&self) -> bool;

    /// The instances of `name` as the table's truth holds them now, not as
    /// a copy last heard (`GET /services/{name}?consistent`): for a caller
    /// about to act on an instance's absence. Fails rather than answer
    /// from a copy when the truth cannot be read; `None` when the service
    /// has no instance.
    fn current_view(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Vec<InstanceView>>, StoreError>> + Send;
}

/// The result of a registration.
#[derive(Debug)]
pub struct Registered {
    /// The instances of every service the new record requires.
    pub answer: Instances,
    /// Whether (`Name`, `Addr`) was registered already.
    pub updated: bool,
}

/// Why a write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// etcd did not answer in time, has no quorum, or refused: nothing was
    /// written, or (after a timeout) the write may still be applied; either
    /// way a retry is safe, every write being idempotent.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// The table has no room for the registration: nothing was written.
    #[error("{0}")]
    Full(#[from] Full),
}

impl StoreError {
    /// The status a write that failed so answers: 503 for an etcd that may
    /// be back in a moment (the host's client moves to another replica);
    /// 507 for a full table, "unable to store the representation needed to
    /// complete the request" (RFC 4918): no replica can store it either,
    /// but it is the registry's condition, not a bad record, and it ends
    /// when instances leave, so a host retries it as it retries a 5xx.
    pub fn status(&self) -> http::StatusCode {
        match self {
            StoreError::Unavailable(_) => http::StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Full(_) => http::StatusCode::INSUFFICIENT_STORAGE,
        }
    }
}

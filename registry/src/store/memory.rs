//! The in-memory store: the table lives in this process only (the default,
//! and the original's behaviour). A restart empties it; hosts notice the
//! silence of heartbeats and register again.

use std::sync::atomic::{AtomicU64, Ordering};

use protocol::record::ServiceRecord;

use super::{InstanceView, Limits, Registered, RegistrationId, Store, StoreError, Table, Target};
use crate::notify::Notifier;

pub struct MemoryStore {
    table: Table,
    /// Every registration gets a new id, so that a heartbeat that started
    /// before a re-registration cannot evict the new one.
    next_id: AtomicU64,
}

impl MemoryStore {
    pub fn new(notifier: Notifier, limits: Limits) -> Self {
        MemoryStore {
            table: Table::new(notifier, limits),
            next_id: AtomicU64::new(1),
        }
    }
}

impl Store for MemoryStore {
    fn table(&self) -> &Table {
        &self.table
    }

    async fn register(&self, record: ServiceRecord) -> Result<Registered, StoreError> {
        let id = RegistrationId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let upserted = self.table.register(record, id)?;
        Ok(Registered {
            answer: upserted.answer.unwrap_or_default(),
            updated: upserted.updated,
        })
    }

    async fn deregister(&self, record: &ServiceRecord) -> Result<bool, StoreError> {
        Ok(self.table.remove(&record.name, &record.addr))
    }

    async fn evict(&self, target: &Target) -> Result<bool, StoreError> {
        Ok(self.table.evict(target))
    }

    fn stale(&self) -> bool {
        false
    }

    async fn current_view(&self, name: &str) -> Result<Option<Vec<InstanceView>>, StoreError> {
        // This table is the truth.
        Ok(self.table.view_service(name))
    }
}

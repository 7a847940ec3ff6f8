//! Notifications: telling dependents that an instance was registered
//! (`POST {dependent}/services`) or removed (`DELETE`).
//!
//! The original sent them one by one, with no timeout, while holding the
//! table's lock, so one dependent that never answered stalled the registry.
//! Here each dependent address has its own queue, drained by its own task:
//! dependents are notified concurrently, a slow one delays only itself, and
//! each one still receives its notifications in order (a `POST` followed by a
//! `DELETE` of the same instance must not arrive swapped).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Method;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::table::Change;
use protocol::http::{HttpClient, send_record};
use protocol::locks::lock;
use protocol::record::ServiceRecord;
use protocol::token::Token;

/// Attempts per notification before giving up and logging it.
pub const NOTIFY_ATTEMPTS: u32 = 3;

/// Pause between two attempts of the same notification.
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// Sends notifications in the background. Cloning shares the queues.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

struct Shared {
    http: HttpClient,
    timeout: Duration,
    /// One queue per dependent address that has notifications pending.
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Notification>>>,
    /// Sent with every notification, so that dependents can tell the
    /// registry from anyone else.
    token: Token,
    metrics: Arc<Metrics>,
}

struct Notification {
    method: Method,
    record: Arc<ServiceRecord>,
    /// When the change happened: the latency is measured from here.
    queued: Instant,
}

impl Notifier {
    /// `timeout` bounds each attempt.
    pub fn new(http: HttpClient, timeout: Duration, token: Token, metrics: Arc<Metrics>) -> Self {
        Self {
            shared: Arc::new(Shared {
                http,
                timeout,
                token,
                metrics,
                queues: Mutex::default(),
            }),
        }
    }

    /// Queues `change` for each of its dependents and returns at once.
    /// `method` is `POST` for a registration, `DELETE` for a removal.
    pub fn notify(&self, method: Method, change: Change) {
        let record = Arc::new(change.record);
        let queued = Instant::now();
        let mut queues = lock(&self.shared.queues);
        for addr in change.dependents {
            let notification = Notification {
                method: method.clone(),
                record: Arc::clone(&record),
                queued,
            };
            match queues.entry(addr) {
                // The worker removes its queue under this lock before it
                // stops, so a queue still in the map is still drained.
                Entry::Occupied(queue) => {
                    let _ = queue.get().send(notification);
                }
                Entry::Vacant(slot) => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let _ = tx.send(notification);
                    let addr = slot.key().clone();
                    slot.insert(tx);
                    tokio::spawn(Arc::clone(&self.shared).drain(addr, rx));
                }
            }
        }
    }
}

impl Shared {
    /// Delivers the queued notifications of one dependent, in order, and
    /// stops when its queue is empty.
    async fn drain(self: Arc<Self>, addr: String, mut rx: mpsc::UnboundedReceiver<Notification>) {
        let url = format!("http://{addr}/services");
        loop {
            let next = match rx.try_recv() {
                Ok(next) => next,
                Err(_) => {
                    let mut queues = lock(&self.queues);
                    // Look again under the lock: `notify` may have queued one
                    // since.
                    match rx.try_recv() {
                        Ok(next) => next,
                        Err(_) => {
                            queues.remove(&addr);
                            return;
                        }
                    }
                }
            };
            self.deliver(&url, next).await;
        }
    }

    async fn deliver(&self, url: &str, notification: Notification) {
        let Notification {
            method,
            record,
            queued,
        } = notification;
        for attempt in 1..=NOTIFY_ATTEMPTS {
            let sent = send_record(
                &self.http,
                method.clone(),
                url,
                &record,
                self.timeout,
                &self.token,
            );
            match sent.await {
                Ok((status, _)) if status.is_success() => {
                    self.metrics.notification_delivered(queued.elapsed());
                    tracing::debug!(%method, url, name = record.name, addr = record.addr, "notified");
                    return;
                }
                Ok((status, _)) => {
                    tracing::debug!(%method, url, attempt, %status, "notification refused");
                }
                Err(e) => tracing::debug!(%method, url, attempt, error = %e, "notification failed"),
            }
            self.metrics.notification_attempt_failed();
            if attempt < NOTIFY_ATTEMPTS {
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
        self.metrics.notification_given_up();
        tracing::warn!(
            %method,
            url,
            name = record.name,
            addr = record.addr,
            "giving up notifying after {NOTIFY_ATTEMPTS} attempts"
        );
    }
}

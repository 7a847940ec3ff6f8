//! Notifications: telling dependents that an instance was registered
//! (`POST {dependent}/services`) or removed (`DELETE`).
//!
//! The original sent them one by one, with no timeout, while holding the
//! table's lock, so one dependent that never answered stalled the registry.
//! Here each dependent address has its own queue, drained by its own task:
//! dependents are notified concurrently, a slow one delays only itself, and
//! each one receives the notifications about one instance in the order the
//! changes were made (a `POST` followed by a `DELETE` of the same instance
//! must not arrive swapped). That order is the order of [`Notifier::notify`]
//! calls, so the table calls it while it still holds its lock (see
//! `table.rs`): queueing only locks this module's map and never waits.
//!
//! A queue holds at most `--notify-queue` notifications in order. A
//! dependent that cannot keep up (or is dead, each notification taking its
//! attempts and timeouts) would otherwise grow it without end; past the
//! bound the queue is coalesced: only the latest notification of each
//! instance stays, in place. What the dependent ends up knowing is the same
//! (the latest state of every instance), it just skips intermediate states,
//! and a queue never holds more than one notification per instance beyond
//! the bound, so its size is bounded by the table's. A dependent that
//! leaves the table has its queue dropped (`Notifier::forget`): it is told
//! nothing more.
//!
//! For the same reason a notification is dropped, and its retries with it,
//! once a newer change of its instance has been queued: a dependent hears
//! that newer state (or has it from its registration answer, if it was not
//! registered when the change was made). Without this, a `DELETE` retried
//! at an address whose service had died and been started again reached
//! the new incarnation after its registration answer, and it forgot a live
//! instance for good.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, StatusCode};

use crate::metrics::Metrics;
use crate::store::table::Change;
use protocol::http::{ClientError, HttpClient, MAX_ANSWER, record_request, send_request};
use protocol::locks::lock;
use protocol::record::ServiceRecord;
use protocol::token::Token;

/// Marks the registry's notifications. On the wire a notification is the
/// same `POST /services` as a registration, so a registry that received
/// one (a record whose `Addr` is a registry's, another replica's or its
/// own under another name) would take it for a registration, notify again,
/// and so on without end; with the mark it refuses it (see `api.rs`).
/// Services ignore the header.
pub(crate) const NOTIFICATION_HEADER: &str = "x-sparrow-notification";

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
    state: Mutex<State>,
    /// Notifications a queue holds before it is coalesced.
    bound: usize,
    /// Sent with every notification, so that dependents can tell the
    /// registry from anyone else.
    token: Token,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct State {
    /// One queue per dependent address that has notifications pending; a
    /// queue in the map has a task draining it.
    queues: HashMap<String, Queue>,
    /// The latest change of each instance with notifications pending.
    latest: Latest,
}

/// The latest change of each instance that has notifications pending, and
/// how many: an entry leaves with the last one, so the map is bounded by
/// the pending notifications.
#[derive(Default)]
struct Latest {
    changes: HashMap<(String, String), (u64, usize)>,
    next: u64,
}

impl Latest {
    /// Records a change of `record`'s instance told to `dependents`; its
    /// number. A change told to nobody still supersedes the pending ones.
    fn change(&mut self, record: &ServiceRecord, dependents: usize) -> u64 {
        let change = self.next;
        self.next += 1;
        let key = (record.name.clone(), record.addr.clone());
        let pending = self.changes.get(&key).map_or(0, |&(_, n)| n) + dependents;
        if pending == 0 {
            self.changes.remove(&key);
        } else {
            self.changes.insert(key, (change, pending));
        }
        change
    }

    /// Whether `notification` still tells its instance's latest change.
    fn is_latest(&self, notification: &Notification) -> bool {
        self.changes
            .get(&notification.instance())
            .is_some_and(|&(latest, _)| latest == notification.change)
    }

    /// `notification` was delivered, given up or dropped.
    fn done(&mut self, notification: &Notification) {
        let key = notification.instance();
        if let Some(entry) = self.changes.get_mut(&key) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                self.changes.remove(&key);
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Notification {
    method: Method,
    record: Arc<ServiceRecord>,
    /// Which change of the table this is ([`Latest`]).
    change: u64,
    /// When the change happened: the latency is measured from here.
    queued: Instant,
}

impl Notification {
    fn same_instance(&self, other: &Notification) -> bool {
        self.record.same_instance(&other.record)
    }

    fn instance(&self) -> (String, String) {
        (self.record.name.clone(), self.record.addr.clone())
    }
}

/// The pending notifications of one dependent, oldest first.
#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Notification>,
}

impl Queue {
    /// Appends `notification`, coalescing first when the queue holds
    /// `bound` notifications already; the notifications that were dropped.
    fn push(&mut self, notification: Notification, bound: usize) -> Vec<Notification> {
        let mut dropped = Vec::new();
        if self.items.len() >= bound {
            dropped = self.coalesce();
        }
        if self.items.len() >= bound {
            // Every pending notification is about a different instance: the
            // new one replaces its instance's, which keeps that instance's
            // order (the pending one was older) and the queue's size.
            if let Some(pending) = self
                .items
                .iter_mut()
                .find(|p| p.same_instance(&notification))
            {
                dropped.push(std::mem::replace(pending, notification));
                return dropped;
            }
        }
        self.items.push_back(notification);
        dropped
    }

    /// Keeps only the latest notification of each instance, where it is;
    /// the others.
    fn coalesce(&mut self) -> Vec<Notification> {
        let before = self.items.len();
        let mut seen = HashSet::new();
        let (mut kept, dropped): (Vec<Notification>, Vec<Notification>) = self
            .items
            .drain(..)
            .rev()
            .partition(|n| seen.insert(n.instance()));
        kept.reverse();
        self.items = kept.into();
        tracing::debug!(
            before,
            after = self.items.len(),
            "notification queue coalesced"
        );
        dropped
    }
}

impl Notifier {
    /// `timeout` bounds each attempt; `bound` is the queue size past which a
    /// dependent's queue is coalesced.
    pub fn new(
        http: HttpClient,
        timeout: Duration,
        token: Token,
        bound: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                http,
                timeout,
                token,
                bound: bound.max(1),
                metrics,
                state: Mutex::default(),
            }),
        }
    }

    /// Queues `change` for each of its dependents and returns at once.
    /// `method` is `POST` for a registration, `DELETE` for a removal.
    pub fn notify(&self, method: Method, change: Change) {
        let record = Arc::new(change.record);
        let queued = Instant::now();
        let mut state = lock(&self.shared.state);
        let State { queues, latest } = &mut *state;
        let number = latest.change(&record, change.dependents.len());
        for addr in change.dependents {
            let notification = Notification {
                method: method.clone(),
                record: Arc::clone(&record),
                change: number,
                queued,
            };
            let dropped = match queues.entry(addr) {
                // The worker removes its queue under this lock before it
                // stops, so a queue still in the map is still drained.
                Entry::Occupied(mut queue) => queue.get_mut().push(notification, self.shared.bound),
                Entry::Vacant(slot) => {
                    let addr = slot.key().clone();
                    let mut queue = Queue::default();
                    let dropped = queue.push(notification, self.shared.bound);
                    slot.insert(queue);
                    tokio::spawn(Arc::clone(&self.shared).drain(addr));
                    dropped
                }
            };
            // Coalesced away: a newer change of the same instance replaced
            // each of them in the queue.
            for notification in &dropped {
                latest.done(notification);
                self.shared.metrics.notification_superseded();
            }
        }
    }
}

impl Notifier {
    /// Drops the pending notifications of the dependent at `addr`: it left
    /// the table (deregistered or evicted), and a dependent that registers
    /// again learns the current state from its answer. Without this, a
    /// dead dependent's queue outlived it by its every notification's
    /// attempts and timeouts, and held memory for each instance that came
    /// and went meanwhile. A delivery under way ends after its attempts.
    pub fn forget(&self, addr: &str) {
        let mut state = lock(&self.shared.state);
        let State { queues, latest } = &mut *state;
        if let Some(queue) = queues.get_mut(addr) {
            for notification in queue.items.drain(..) {
                latest.done(&notification);
                self.shared.metrics.notification_superseded();
            }
        }
    }
}

impl Shared {
    /// Delivers the queued notifications of one dependent, in order, and
    /// stops when its queue is empty.
    async fn drain(self: Arc<Self>, addr: String) {
        let url = format!("http://{addr}/services");
        loop {
            let next = {
                let mut state = lock(&self.state);
                let Some(queue) = state.queues.get_mut(&addr) else {
                    return;
                };
                match queue.items.pop_front() {
                    Some(next) => next,
                    None => {
                        state.queues.remove(&addr);
                        return;
                    }
                }
            };
            // In a task of its own, so that a panic (a bug) costs this
            // notification only: in this task it would end the drain, and
            // the queue, left in the map, would never be drained again.
            let delivery = tokio::spawn({
                let (shared, url, next) = (Arc::clone(&self), url.clone(), next.clone());
                async move { shared.deliver(&url, &next).await }
            });
            if let Err(e) = delivery.await {
                self.metrics.notification_given_up();
                tracing::error!(
                    method = %next.method,
                    url,
                    name = next.record.name,
                    addr = next.record.addr,
                    error = %e,
                    "notification dropped: its delivery failed"
                );
            }
            lock(&self.state).latest.done(&next);
        }
    }

    /// Sends one notification, marked with [`NOTIFICATION_HEADER`] (and the
    /// token, if any), and reads the whole answer, all within the timeout.
    async fn send(
        &self,
        method: Method,
        url: &str,
        record: &ServiceRecord,
    ) -> Result<StatusCode, ClientError> {
        let mut request = record_request(method, url, record, &self.token)?;
        request
            .headers_mut()
            .insert(NOTIFICATION_HEADER, HeaderValue::from_static("1"));
        let (status, _answer) = send_request(&self.http, request, self.timeout, MAX_ANSWER).await?;
        Ok(status)
    }

    /// Whether a newer change of `notification`'s instance was queued.
    fn superseded(&self, notification: &Notification) -> bool {
        !lock(&self.state).latest.is_latest(notification)
    }

    async fn deliver(&self, url: &str, notification: &Notification) {
        fail::fail_point!("registry::deliver");
        let Notification {
            method,
            record,
            queued,
            ..
        } = notification;
        for attempt in 1..=NOTIFY_ATTEMPTS {
            if self.superseded(notification) {
                self.metrics.notification_superseded();
                tracing::debug!(%method, url, name = record.name, addr = record.addr, "not notified: a newer change was queued");
                return;
            }
            match self.send(method.clone(), url, record).await {
                Ok(status) if status.is_success() => {
                    self.metrics.notification_delivered(queued.elapsed());
                    tracing::debug!(%method, url, name = record.name, addr = record.addr, "notified");
                    return;
                }
                Ok(status) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn n(method: Method, addr: &str) -> Notification {
        Notification {
            method,
            record: Arc::new(ServiceRecord::new("log", addr, vec![])),
            change: 0,
            queued: Instant::now(),
        }
    }

    fn shown(queue: &Queue) -> Vec<String> {
        queue
            .items
            .iter()
            .map(|n| format!("{} {}", n.method, n.record.addr))
            .collect()
    }

    #[test]
    fn a_newer_change_supersedes_older_ones_and_leaves_with_its_last_notification() {
        let mut latest = Latest::default();
        let record = ServiceRecord::new("log", "h:1", vec![]);
        let removed = Notification {
            change: latest.change(&record, 2),
            ..n(Method::DELETE, "h:1")
        };
        assert!(latest.is_latest(&removed));
        let back = Notification {
            change: latest.change(&record, 1),
            ..n(Method::POST, "h:1")
        };
        assert!(!latest.is_latest(&removed));
        assert!(latest.is_latest(&back));
        // Two dependents were told of the removal, one of the return.
        latest.done(&removed);
        latest.done(&back);
        assert!(!latest.changes.is_empty());
        latest.done(&removed);
        assert!(latest.changes.is_empty());
        // A change told to nobody leaves nothing behind...
        latest.change(&record, 0);
        assert!(latest.changes.is_empty());
        // ...but outdates what is pending.
        let pending = Notification {
            change: latest.change(&record, 1),
            ..n(Method::DELETE, "h:1")
        };
        latest.change(&record, 0);
        assert!(!latest.is_latest(&pending));
    }

    #[test]
    fn keeps_everything_in_order_below_the_bound() {
        let mut queue = Queue::default();
        queue.push(n(Method::POST, "h:1"), 4);
        queue.push(n(Method::DELETE, "h:1"), 4);
        queue.push(n(Method::POST, "h:1"), 4);
        assert_eq!(shown(&queue), ["POST h:1", "DELETE h:1", "POST h:1"]);
    }

    #[test]
    fn past_the_bound_keeps_the_latest_state_of_each_instance() {
        let mut queue = Queue::default();
        for _ in 0..50 {
            queue.push(n(Method::POST, "h:1"), 3);
            queue.push(n(Method::POST, "h:2"), 3);
            queue.push(n(Method::DELETE, "h:1"), 3);
        }
        assert!(queue.items.len() <= 3, "{:?}", shown(&queue));
        // Whatever was skipped, the last word on each instance is the last
        // change made to it.
        let last = |addr: &str| {
            queue
                .items
                .iter()
                .rev()
                .find(|n| n.record.addr == addr)
                .map(|n| n.method.clone())
        };
        assert_eq!(last("h:1"), Some(Method::DELETE));
        assert_eq!(last("h:2"), Some(Method::POST));
    }

    #[test]
    fn a_full_queue_of_distinct_instances_replaces_in_place_or_grows() {
        let mut queue = Queue::default();
        queue.push(n(Method::POST, "h:1"), 2);
        queue.push(n(Method::POST, "h:2"), 2);
        queue.push(n(Method::DELETE, "h:1"), 2);
        assert_eq!(shown(&queue), ["DELETE h:1", "POST h:2"]);
        // A third instance cannot be coalesced with anything: it is kept,
        // so the queue is bounded by the number of instances.
        queue.push(n(Method::POST, "h:3"), 2);
        assert_eq!(shown(&queue), ["DELETE h:1", "POST h:2", "POST h:3"]);
    }
}

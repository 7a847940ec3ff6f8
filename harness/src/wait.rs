//! Waiting until something holds, with a deadline. The condition is looked
//! at again every few milliseconds and the wait ends as soon as it holds:
//! a test never sleeps a fixed time hoping that the thing has happened,
//! which is slow when it happens early and flaky when it happens late.

use std::future::Future;
use std::time::{Duration, Instant};

/// Generous: the machine may be busy building or compiling something else.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often a condition is looked at, unless [`Deadline::every`] says.
const EVERY: Duration = Duration::from_millis(20);

/// A moment to give up at, and how often to look again until then.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    every: Duration,
}

impl Deadline {
    pub fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
            every: EVERY,
        }
    }

    /// Looks again every `every` instead of every 20 ms.
    pub fn every(self, every: Duration) -> Deadline {
        Deadline { every, ..self }
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The pause before the next look: never past the deadline, so that the
    /// last look happens right at it.
    fn pause(&self) -> Duration {
        self.every
            .min(self.at.saturating_duration_since(Instant::now()))
    }

    /// Calls `check` until it gives a value; `None` once the deadline has
    /// passed (`check` is called at least once, and once at the deadline).
    /// Blocks the thread in between.
    pub fn poll<T>(&self, mut check: impl FnMut() -> Option<T>) -> Option<T> {
        loop {
            if let Some(value) = check() {
                return Some(value);
            }
            if self.passed() {
                return None;
            }
            std::thread::sleep(self.pause());
        }
    }

    /// [`Deadline::poll`] for async code: the task sleeps in between, not
    /// the thread.
    pub async fn poll_async<T, F, Fut>(&self, mut check: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        loop {
            if let Some(value) = check().await {
                return Some(value);
            }
            if self.passed() {
                return None;
            }
            tokio::time::sleep(self.pause()).await;
        }
    }
}

/// Whether `condition` came to hold within `timeout` (blocking).
pub fn poll_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    Deadline::after(timeout)
        .poll(|| condition().then_some(()))
        .is_some()
}

/// Waits until `check` holds, failing the test after [`DEADLINE`] with
/// `what` it was waiting for.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_some(what, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// Waits until `check` gives a value and returns it, failing the test after
/// [`DEADLINE`] with `what` it was waiting for.
pub async fn eventually_some<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    Deadline::after(DEADLINE)
        .poll_async(check)
        .await
        .unwrap_or_else(|| panic!("timed out after {DEADLINE:?} waiting for {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_is_looked_at_until_it_holds_and_once_at_the_deadline() {
        let mut looks = 0;
        assert!(poll_until(Duration::from_secs(5), || {
            looks += 1;
            looks == 3
        }));
        assert_eq!(looks, 3);

        let mut looks = 0;
        let started = Instant::now();
        assert!(!poll_until(Duration::from_millis(50), || {
            looks += 1;
            false
        }));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(looks >= 2, "{looks}");
    }
}

//! Notifications about one instance reach a dependent in the order the
//! changes were made: after every burst of concurrent registrations and
//! deregistrations of the same instances, the last thing a dependent heard
//! about each one is the registry's final state of it.
//!
//! The registry used to queue notifications after releasing the table's
//! lock, so a `POST` and a `DELETE` of one instance racing each other could
//! be queued swapped, leaving the dependent with an instance the registry
//! no longer had (or without one it had).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{Behaviour, FakeService, NO_HEARTBEAT, RegistryProcess};
use http::Method;
use protocol::record::ServiceRecord;

const INSTANCES: usize = 4;
/// Requests of one burst, all sent at once.
const BURST: usize = 16;
const ROUNDS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dependent_ends_with_the_final_state_of_every_instance() {
    let registry = Arc::new(RegistryProcess::start(NO_HEARTBEAT));
    let dependent = FakeService::start(Behaviour::Healthy).await;
    registry
        .register(&dependent.record("watcher", &["flappy"]))
        .await;
    // Nobody listens there: no heartbeat runs during the test.
    let flappy =
        |i: usize| ServiceRecord::new("flappy", format!("127.0.0.1:{}", 40000 + i), vec![]);

    for round in 0..ROUNDS {
        // A burst of concurrent writes, half registrations, every instance
        // written by several requests at once.
        let burst: Vec<_> = (0..BURST)
            .map(|n| {
                let registry = registry.clone();
                let record = flappy(n % INSTANCES);
                let register = (n / INSTANCES + round).is_multiple_of(2);
                tokio::spawn(async move {
                    if register {
                        registry.register(&record).await;
                    } else {
                        registry.deregister(&record).await;
                    }
                })
            })
            .collect();
        for write in burst {
            write.await.unwrap();
        }

        // Every notification is queued before its write is answered: the
        // dependent must come to agree with the registry, and stay so once
        // nothing more arrives.
        let registered = registry.addrs_of("flappy").await;
        let agrees = || {
            let mut heard: BTreeMap<String, Method> = BTreeMap::new();
            for n in dependent.notifications() {
                heard.insert(n.addr, n.method);
            }
            (0..INSTANCES).all(|i| {
                let addr = flappy(i).addr;
                registered.contains(&addr) == (heard.get(&addr) == Some(&Method::POST))
            })
        };
        let mut count = dependent.notifications().len();
        let mut quiet_since = Instant::now();
        let settled = poll_until_or_timeout(Duration::from_secs(5), || {
            let now = dependent.notifications().len();
            if now != count {
                count = now;
                quiet_since = Instant::now();
            }
            quiet_since.elapsed() > Duration::from_millis(150) && agrees()
        })
        .await;
        assert!(
            settled,
            "round {round}: the registry has {registered:?}, the dependent's last words are {:?}",
            dependent
                .notifications()
                .iter()
                .rev()
                .take(INSTANCES * 2)
                .map(|n| format!("{} {}", n.method, n.addr))
                .collect::<Vec<_>>()
        );
    }
}

/// Polls `check` every 20 ms; whether it held within `timeout`.
async fn poll_until_or_timeout(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

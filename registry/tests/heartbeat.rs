//! Heartbeats: concurrent, bounded per attempt, and evicting after the last
//! failed attempt — also at scale, without the registry stalling.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use harness::{
    Behaviour, FAST_HEARTBEATS, FakeService, RegistryProcess, addrs, eventually, eventually_some,
};
use http::Method;
use protocol::registry_client::RegistryClient;

/// 1,000 instances, half of which die: the registry keeps answering, and
/// every dead one is gone within interval + attempts × retry-delay + 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_instances_half_dead_are_evicted_in_time() {
    let registry = RegistryProcess::start(&[]);
    let client = RegistryClient::new(&registry.url(""), Duration::from_secs(10)).unwrap();

    let mut live = Vec::new();
    let mut doomed = Vec::new();
    for _ in 0..500 {
        live.push(FakeService::start(Behaviour::Healthy).await);
        // On their own loopback address: a port they free cannot be
        // reused by another test's service that would then answer for them.
        doomed.push(FakeService::start_on("127.0.0.3", Behaviour::Healthy).await);
    }
    for service in live.iter().chain(&doomed) {
        client.register(&service.record("svc", &[])).await.unwrap();
    }
    eventually("every instance heart-beaten once", || async {
        live.iter().chain(&doomed).all(|s| s.heartbeats() > 0)
    })
    .await;

    for service in &mut doomed {
        service.stop().await;
    }
    let dead_since = Instant::now();
    let doomed_addrs: HashSet<String> = doomed.iter().map(|s| s.addr.clone()).collect();
    let left = eventually_some("every dead instance evicted", || async {
        // Each poll is a request that must be answered.
        let left = registry.addrs_of("svc").await;
        (!left.iter().any(|a| doomed_addrs.contains(a))).then_some(left)
    })
    .await;
    let took = dead_since.elapsed();
    eprintln!("500 dead instances evicted {took:?} after they died");
    let h = FAST_HEARTBEATS;
    let bound = h.interval + h.retry_delay * h.attempts + Duration::from_secs(1);
    assert!(
        took <= bound,
        "dead instances evicted after {took:?}, bound {bound:?}"
    );

    let live_addrs: HashSet<String> = live.iter().map(|s| s.addr.clone()).collect();
    assert_eq!(left.into_iter().collect::<HashSet<_>>(), live_addrs);
}

/// An instance that accepts connections and never answers fails each
/// attempt at the timeout and is evicted; its dependents are told.
#[tokio::test]
async fn an_instance_that_never_answers_is_evicted() {
    let registry = RegistryProcess::start(&[]);
    let silent = FakeService::start(Behaviour::Hang).await;
    let dependent = FakeService::start(Behaviour::Healthy).await;
    registry
        .register(&dependent.record("visit", &["log"]))
        .await;
    registry.register(&silent.record("log", &[])).await;

    eventually("the silent instance marked failing", || async {
        registry.services().await["log"][0]["health"] == "failing"
    })
    .await;
    eventually(
        "the silent instance evicted and its dependent told",
        || async {
            addrs(&registry.services().await["log"]).is_empty()
                && dependent.notifications_about(&silent.addr)
                    == [
                        (Method::POST, "log".to_string()),
                        (Method::DELETE, "log".to_string()),
                    ]
        },
    )
    .await;
    // The healthy one stays.
    assert_eq!(registry.addrs_of("visit").await, [dependent.addr.as_str()]);
}

/// The protocol's heartbeat answer is empty: one that sends a megabyte is
/// not read (64 heartbeats run at once) and counts as a failed attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_answered_with_a_megabyte_fails_and_evicts() {
    let registry = RegistryProcess::start(&[]);
    let client = RegistryClient::new(&registry.url(""), Duration::from_secs(10)).unwrap();
    let chatty = FakeService::start(Behaviour::Chatty).await;
    client
        .register(&chatty.record("chatty", &[]))
        .await
        .unwrap();
    eventually("heart-beaten", || async { chatty.heartbeats() > 0 }).await;
    eventually("evicted", || async {
        registry.addrs_of("chatty").await.is_empty()
    })
    .await;
}

//! Notifications go out concurrently, off the request path: a dependent that
//! accepts the connection and never answers delays neither the registration
//! answer nor anyone else's notification.

use std::time::{Duration, Instant};

use harness::{Behaviour, FakeService, RegistryProcess, eventually};
use http::Method;

#[tokio::test]
async fn a_dependent_that_never_answers_delays_nobody() {
    // Each notification attempt to the silent dependent takes 5 s; waiting
    // for it would show as answers and notifications seconds late.
    let registry =
        RegistryProcess::start(&["--notify-timeout", "5s", "--heartbeat-interval", "1h"]);
    let silent = FakeService::start(Behaviour::Hang).await;
    let healthy = FakeService::start(Behaviour::Healthy).await;
    registry.register(&silent.record("visit", &["log"])).await;
    registry.register(&healthy.record("visit", &["log"])).await;

    let mut logs = Vec::new();
    for _ in 0..3 {
        logs.push(FakeService::start(Behaviour::Healthy).await);
    }
    let start = Instant::now();
    for log in &logs {
        let asked = Instant::now();
        registry.register(&log.record("log", &[])).await;
        let answered = asked.elapsed();
        assert!(
            answered < Duration::from_secs(2),
            "registration answered after {answered:?}"
        );
    }
    eventually("the healthy dependent hears of every log", || async {
        logs.iter().all(|log| {
            healthy.notifications_about(&log.addr) == [(Method::POST, "log".to_string())]
        })
    })
    .await;
    let last = healthy
        .notifications()
        .iter()
        .map(|n| n.received)
        .max()
        .unwrap();
    let notified = last - start;
    assert!(
        notified < Duration::from_secs(3),
        "notified after {notified:?}"
    );
    assert!(silent.notifications().is_empty());
}

//! Notifications go out concurrently, off the request path: a dependent that
//! accepts the connection and never answers delays neither the registration
//! answer nor anyone else's notification. A registry is never notified as a
//! dependent: a record at its own address is refused, and a registry's
//! notification is never taken for a registration.

use std::time::{Duration, Instant};

use harness::{Behaviour, FakeService, NO_HEARTBEAT, RegistryProcess, counter, eventually};
use http::{Method, StatusCode};
use serde_json::json;

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

/// `sparrow_registry_notifications_total{result=...}` of `registry`.
async fn notifications(registry: &RegistryProcess, result: &str) -> u64 {
    let (_, metrics) = registry.request(Method::GET, "/metrics", "").await;
    let series = format!("sparrow_registry_notifications_total{{result=\"{result}\"}}");
    counter(&metrics, &series)
}

/// A notification still being retried at an address whose dependent died
/// must not reach a new service started there once a newer change of its
/// instance was made: that service has the newer state from its
/// registration answer, and a stale `DELETE` would make it forget a live
/// instance for good.
#[tokio::test]
async fn a_notification_outdated_by_a_newer_change_is_not_delivered() {
    // The first attempt to the dead dependent hangs for a second: time for
    // the changes below before the retry.
    let registry =
        RegistryProcess::start(&["--notify-timeout", "1s", "--heartbeat-interval", "1h"]);
    let visit = FakeService::start(Behaviour::Hang).await;
    let log = FakeService::start(Behaviour::Healthy).await;
    let (visit_record, log_record) = (visit.record("visit", &["log"]), log.record("log", &[]));
    registry.register(&log_record).await;
    registry.register(&visit_record).await;
    // log goes: visit is told, but does not answer.
    registry.deregister(&log_record).await;
    // visit goes too; log comes back on its address, with visit no longer
    // a dependent to tell.
    registry.deregister(&visit_record).await;
    registry.register(&log_record).await;
    // A new visit on the old one's address registers, and hears of log.
    visit.set_behaviour(Behaviour::Healthy);
    let answer = registry.register(&visit_record).await;
    assert_eq!(answer["log"][0]["Addr"], log.addr.as_str(), "{answer}");

    // The DELETE of the first log is done with: dropped, or delivered.
    eventually(
        "the outdated notification is dropped or delivered",
        || async {
            notifications(&registry, "superseded").await > 0
                || !visit.notifications_about(&log.addr).is_empty()
        },
    )
    .await;
    assert_eq!(visit.notifications_about(&log.addr), []);
    assert_eq!(notifications(&registry, "superseded").await, 1);
}

/// Every notification is accounted for in the metrics: delivered, failed
/// after every attempt, or superseded, those a full queue coalesced away
/// included.
#[tokio::test]
async fn every_notification_is_counted_however_it_ends() {
    let registry = RegistryProcess::start(&[
        "--notify-queue",
        "2",
        "--notify-timeout",
        "200ms",
        "--heartbeat-interval",
        "1h",
    ]);
    // A dependent that never answers: its queue fills up at once.
    let silent = FakeService::start(Behaviour::Hang).await;
    registry.register(&silent.record("visit", &["log"])).await;
    let log = FakeService::start(Behaviour::Healthy).await;
    for _ in 0..10 {
        registry.register(&log.record("log", &[])).await;
    }
    eventually("all ten notifications are counted", || async {
        let mut counted = 0;
        for result in ["delivered", "failed", "superseded"] {
            counted += notifications(&registry, result).await;
        }
        counted == 10
    })
    .await;
}

/// A dependent that leaves the table (deregistered here, evicted alike)
/// is told nothing more: what was queued for it is dropped, counted as
/// superseded, instead of being tried, attempts and timeouts, one change
/// after another long after it went.
#[tokio::test]
async fn a_dependent_that_left_is_notified_no_more() {
    let registry =
        RegistryProcess::start(&["--notify-timeout", "200ms", "--heartbeat-interval", "1h"]);
    let silent = FakeService::start(Behaviour::Hang).await;
    let dependent = silent.record("visit", &["log"]);
    registry.register(&dependent).await;
    let mut logs = Vec::new();
    for _ in 0..10 {
        let log = FakeService::start(Behaviour::Healthy).await;
        registry.register(&log.record("log", &[])).await;
        logs.push(log);
    }
    registry.deregister(&dependent).await;
    eventually("all ten notifications are counted", || async {
        notifications(&registry, "failed").await + notifications(&registry, "superseded").await
            == 10
    })
    .await;
    // The one under way when it left, and perhaps the next.
    assert!(notifications(&registry, "failed").await <= 2);
}

#[tokio::test]
async fn a_record_at_the_registrys_own_address_is_refused() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    let own = registry.proc.addr();
    // Registered, it would be notified of svc, take the notification for
    // a registration of svc, and notify itself again, without end.
    for addr in [own.to_string(), format!("localhost:{}", own.port())] {
        let record = json!({"Name": "loop", "Addr": addr, "RequiredServices": ["svc"]});
        let (status, reason) = registry
            .request(Method::POST, "/services", record.to_string())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{addr}: {reason}");
        assert!(reason.contains("own address"), "{reason}");
        assert_eq!(reason.lines().count(), 1, "{reason}");
    }
    let svc = FakeService::start(Behaviour::Healthy).await;
    registry.register(&svc.record("svc", &[])).await;
    let table = registry.services().await;
    assert_eq!(table.as_object().unwrap().len(), 1, "{table}");
    assert_eq!(notifications(&registry, "delivered").await, 0);
    assert_eq!(notifications(&registry, "failed").await, 0);
}

#[tokio::test]
async fn a_registrys_notification_is_not_taken_for_a_registration() {
    // Replicas on one etcd, or two registries: a record registered with
    // one whose Addr is the other's makes the first notify the second.
    let first = RegistryProcess::start(NO_HEARTBEAT);
    let second = RegistryProcess::start(NO_HEARTBEAT);
    let loop_record = json!({
        "Name": "loop",
        "Addr": second.proc.addr().to_string(),
        "RequiredServices": ["svc"],
    });
    let (status, body) = first
        .request(Method::POST, "/services", loop_record.to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let svc = FakeService::start(Behaviour::Healthy).await;
    first.register(&svc.record("svc", &[])).await;

    // Once the notification is settled, one way or the other ...
    eventually(
        "the notification to the second registry settles",
        || async {
            notifications(&first, "delivered").await + notifications(&first, "failed").await > 0
        },
    )
    .await;
    // ... it was refused, not taken for a registration of svc.
    assert_eq!(second.services().await, json!({}));
    assert_eq!(notifications(&first, "failed").await, 1);
    assert!(
        second
            .proc
            .log()
            .contains("refused a registry's notification")
    );
}

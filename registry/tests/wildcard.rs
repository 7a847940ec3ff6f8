//! `RequiredServices: ["*"]` means every service: a gateway sees every
//! service in its registration answer and hears of every registration and
//! removal. Services that don't use it see no difference.

use harness::{Behaviour, FakeService, RegistryProcess, addrs, eventually};
use http::Method;

#[tokio::test]
async fn a_wildcard_dependent_sees_every_service() {
    let registry = RegistryProcess::start(&[]);
    let log = FakeService::start(Behaviour::Healthy).await;
    let visit = FakeService::start(Behaviour::Healthy).await;
    let gateway = FakeService::start(Behaviour::Healthy).await;
    registry.register(&log.record("log", &[])).await;
    registry.register(&visit.record("visit", &["log"])).await;

    let answer = registry.register(&gateway.record("gateway", &["*"])).await;
    let services: Vec<&String> = answer.as_object().unwrap().keys().collect();
    assert_eq!(services, ["log", "visit"]);
    assert_eq!(addrs(&answer["log"]), [log.addr.as_str()]);
    assert_eq!(addrs(&answer["visit"]), [visit.addr.as_str()]);
    // Nobody requires the gateway by name.
    assert!(log.notifications().is_empty());

    let mut other = FakeService::start(Behaviour::Healthy).await;
    registry.register(&other.record("other", &[])).await;
    registry.deregister(&visit.record("visit", &["log"])).await;
    eventually(
        "the gateway hears of the registration and the removal",
        || async {
            gateway.notifications_about(&other.addr) == [(Method::POST, "other".to_string())]
                && gateway.notifications_about(&visit.addr)
                    == [(Method::DELETE, "visit".to_string())]
        },
    )
    .await;

    other.stop().await;
    eventually("the gateway hears of the eviction", || async {
        gateway.notifications_about(&other.addr).last()
            == Some(&(Method::DELETE, "other".to_string()))
    })
    .await;
    // visit requires only log: it heard of nothing else.
    assert!(visit.notifications().is_empty());
}

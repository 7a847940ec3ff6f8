//! Wire compatibility with the original registry: the seed's JSON, the
//! registration answer, upsert, deregistration and notifications — and a
//! service written only from PROTOCOL.md, end to end.

use harness::{
    Behaviour, FakeService, NO_HEARTBEAT, RegistryProcess, addrs, eventually, eventually_some,
};
use http::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn registration_answers_every_required_service_never_null() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    // Exactly what the Go code sends.
    let visit = r#"{"Name":"visit","Addr":"127.0.0.1:20003","RequiredServices":["log","cache"]}"#;
    let (status, body) = registry.request(Method::POST, "/services", visit).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"cache":[],"log":[]}"#);

    let log = r#"{"name":"log","addr":"127.0.0.1:20002","requiredServices":null}"#;
    let (status, body) = registry.request(Method::POST, "/services", log).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "{}");

    let (_, body) = registry.request(Method::POST, "/services", visit).await;
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer,
        json!({
            "cache": [],
            "log": [{"Name": "log", "Addr": "127.0.0.1:20002", "RequiredServices": []}],
        })
    );
}

/// Go's `encoding/json` reads a field name in any case, and so do we: no
/// spelling is refused, and none silently drops a field.
#[tokio::test]
async fn field_names_are_read_in_any_case_as_go_reads_them() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    for (name, body) in [
        (
            "ci",
            r#"{"Name":"ci","Addr":"127.0.0.9:32902","RequiredSERVICES":["x"]}"#,
        ),
        (
            "ci2",
            r#"{"nAmE":"ci2","aDdR":"127.0.0.9:32902","rEqUiReDsErViCeS":["x"],"Other":1}"#,
        ),
    ] {
        let (status, answer) = registry.request(Method::POST, "/services", body).await;
        assert_eq!(
            (status, answer.as_str()),
            (StatusCode::OK, r#"{"x":[]}"#),
            "{body}"
        );
        assert_eq!(
            registry.services().await[name][0]["RequiredServices"],
            json!(["x"]),
            "{body}"
        );
        let (status, _) = registry.request(Method::DELETE, "/services", body).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(registry.services().await, json!({}));
}

#[tokio::test]
async fn registering_again_updates_instead_of_duplicating() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    let first = r#"{"Name":"host","Addr":"127.0.0.1:4000","RequiredServices":["log"]}"#;
    let second = r#"{"Name":"host","Addr":"127.0.0.1:4000","RequiredServices":["visit"]}"#;
    for body in [first, first, second] {
        let (status, _) = registry.request(Method::POST, "/services", body).await;
        assert_eq!(status, StatusCode::OK);
    }
    let hosts = &registry.services().await["host"];
    assert_eq!(hosts.as_array().unwrap().len(), 1, "{hosts}");
    assert_eq!(hosts[0]["RequiredServices"], json!(["visit"]));
}

#[tokio::test]
async fn deregistering_an_unknown_instance_answers_200_and_changes_nothing() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    let log = r#"{"Name":"log","Addr":"127.0.0.1:20002","RequiredServices":[]}"#;
    registry.request(Method::POST, "/services", log).await;
    let before = registry.services().await;

    for unknown in [
        r#"{"Name":"log","Addr":"127.0.0.1:20009","RequiredServices":[]}"#,
        r#"{"Name":"visit","Addr":"127.0.0.1:20002","RequiredServices":[]}"#,
    ] {
        let (status, body) = registry.request(Method::DELETE, "/services", unknown).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    }
    assert_eq!(registry.services().await, before);

    let (status, body) = registry.request(Method::DELETE, "/services", log).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert_eq!(registry.services().await, json!({}));
}

#[tokio::test]
async fn dependents_hear_of_registrations_and_removals_but_not_of_themselves() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    let visit = FakeService::start(Behaviour::Healthy).await;
    let log = FakeService::start(Behaviour::Healthy).await;
    // A service that requires its own name: its peers hear of it, it does
    // not hear of itself.
    let peer = FakeService::start(Behaviour::Healthy).await;
    registry.register(&visit.record("visit", &["log"])).await;
    registry.register(&peer.record("log", &["log"])).await;

    registry.register(&log.record("log", &[])).await;
    eventually("visit and peer notified of log", || async {
        visit.notifications_about(&log.addr) == [(Method::POST, "log".to_string())]
            && peer.notifications_about(&log.addr) == [(Method::POST, "log".to_string())]
    })
    .await;

    registry.deregister(&log.record("log", &[])).await;
    let expected = [
        (Method::POST, "log".to_string()),
        (Method::DELETE, "log".to_string()),
    ];
    eventually("visit notified of the removal", || async {
        visit.notifications_about(&log.addr) == expected
            && peer.notifications_about(&log.addr) == expected
    })
    .await;
    assert!(peer.notifications_about(&peer.addr).is_empty());
    assert!(log.notifications().is_empty());
}

/// A service written only from PROTOCOL.md: lowercase JSON, its own
/// `/heart-beat` and `/services` endpoints, nothing from this crate.
#[tokio::test]
async fn a_service_written_from_the_protocol_works_end_to_end() {
    let registry = RegistryProcess::start(&[]);
    let service = FakeService::start(Behaviour::Healthy).await;
    let mut doomed_log = FakeService::start(Behaviour::Healthy).await;

    let body = format!(
        r#"{{"name":"visit","addr":"{}","requiredServices":["log"]}}"#,
        service.addr
    );
    let (status, answer) = registry.request(Method::POST, "/services", body).await;
    assert_eq!((status, answer.as_str()), (StatusCode::OK, r#"{"log":[]}"#));

    // Notified of another service.
    let log_record = format!(
        r#"{{"Name":"log","Addr":"{}","RequiredServices":[]}}"#,
        doomed_log.addr
    );
    registry
        .request(Method::POST, "/services", log_record)
        .await;
    eventually("the service is told about log", || async {
        service.notifications_about(&doomed_log.addr) == [(Method::POST, "log".to_string())]
    })
    .await;

    // Heart-beaten.
    eventually("the service is heart-beaten and passing", || async {
        service.heartbeats() > 0 && registry.services().await["visit"][0]["health"] == "passing"
    })
    .await;

    // Its dependency stops answering: evicted, and the service told so.
    doomed_log.stop().await;
    eventually("log evicted and the service told", || async {
        registry.addrs_of("log").await.is_empty()
            && service.notifications_about(&doomed_log.addr).last()
                == Some(&(Method::DELETE, "log".to_string()))
    })
    .await;

    // The service itself stops answering: evicted too.
    let mut service = service;
    service.stop().await;
    let left = eventually_some("the service evicted", || async {
        let services = registry.services().await;
        addrs(&services["visit"]).is_empty().then_some(services)
    })
    .await;
    assert_eq!(left, json!({}));
    let (status, _) = registry.request(Method::GET, "/services/visit", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(doomed_log.notifications().is_empty());
}

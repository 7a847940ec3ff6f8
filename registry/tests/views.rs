//! The read-only views the original lacks: `GET /services` and
//! `GET /services/{name}`, with each instance's health.

use harness::{Behaviour, FakeService, NO_HEARTBEAT, RegistryProcess, eventually};
use http::{Method, StatusCode, header};
use protocol::http::http_client;
use serde_json::{Value, json};

#[tokio::test]
async fn views_show_every_instance_with_its_health() {
    let registry = RegistryProcess::start(&[]);
    let log = FakeService::start(Behaviour::Healthy).await;
    let visit = FakeService::start(Behaviour::Healthy).await;
    registry.register(&log.record("log", &[])).await;
    registry.register(&visit.record("visit", &["log"])).await;

    let all = registry.services().await;
    assert_eq!(
        all["visit"],
        json!([{
            "Name": "visit",
            "Addr": visit.addr,
            "RequiredServices": ["log"],
            "health": "unchecked",
            "last_heartbeat_unix_ms": null,
        }])
    );
    assert_eq!(all.as_object().unwrap().len(), 2);

    eventually("both instances passing", || async {
        let all = registry.services().await;
        ["log", "visit"]
            .iter()
            .all(|name| all[name][0]["health"] == "passing")
    })
    .await;

    let (status, body) = registry.request(Method::GET, "/services/log", "").await;
    assert_eq!(status, StatusCode::OK);
    let instances: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(instances.as_array().unwrap().len(), 1);
    assert_eq!(instances[0]["Addr"], log.addr.as_str());
    assert_eq!(instances[0]["health"], "passing");
    assert!(instances[0]["last_heartbeat_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);

    let (status, body) = registry.request(Method::GET, "/services/cache", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // This table is the truth: `?consistent` reads it alike.
    let (status, body) = registry
        .request(Method::GET, "/services/log?consistent", "")
        .await;
    assert_eq!(status, StatusCode::OK);
    let consistent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(consistent[0]["Addr"], log.addr.as_str());
    assert_eq!(consistent[0]["health"], "passing");
    let (status, body) = registry
        .request(Method::GET, "/services/cache?consistent=true", "")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn views_are_json() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    let request = http::Request::get(registry.url("/services"))
        .body(Default::default())
        .unwrap();
    let response = http_client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(registry.services().await, json!({}));
}

#[tokio::test]
async fn a_service_is_found_by_its_percent_encoded_name() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    for (name, port) in [
        ("ünï日本", 1),
        ("a?b", 2),
        ("c#d", 3),
        ("e%f", 4),
        ("log", 5),
    ] {
        let record = json!({"Name": name, "Addr": format!("127.0.0.1:{port}")});
        let (status, body) = registry
            .request(Method::POST, "/services", record.to_string())
            .await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }
    for (path, name) in [
        ("/services/%C3%BCn%C3%AF%E6%97%A5%E6%9C%AC", "ünï日本"),
        ("/services/%c3%bcn%c3%af%e6%97%a5%e6%9c%ac", "ünï日本"),
        ("/services/a%3Fb", "a?b"),
        ("/services/c%23d", "c#d"),
        ("/services/e%25f", "e%f"),
        ("/services/%6Cog", "log"),
        ("/services/log", "log"),
    ] {
        let (status, body) = registry.request(Method::GET, path, "").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let instances: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(instances[0]["Name"], name, "{path}: {body}");
    }
    // Not UTF-8 once decoded, or a '%' that is no escape: a one-line 400.
    for path in [
        "/services/%FF",
        "/services/%C3",
        "/services/a%2",
        "/services/%zz",
    ] {
        let (status, reason) = registry.request(Method::GET, path, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {reason}");
        assert_eq!(reason.lines().count(), 1, "{reason:?}");
    }
    let (status, _) = registry.request(Method::GET, "/services/a%3Fc", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

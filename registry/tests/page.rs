//! The registry's page and its data, and the metrics route: `GET /` is the
//! page, `GET /overview` the table with the registry's clock, `GET
//! /metrics` the metrics; other methods answer 405 and change nothing.

use harness::{Behaviour, FakeService, NO_HEARTBEAT, RegistryProcess};
use http::{Method, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn the_page_its_data_and_the_metrics_are_served() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    let (status, page) = registry.request(Method::GET, "/", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<title>Sparrow registry</title>"), "{page}");
    assert!(
        page.contains("fetch(\"overview\""),
        "the page polls its data"
    );

    let (status, empty) = registry.request(Method::GET, "/overview", "").await;
    assert_eq!(status, StatusCode::OK);
    let empty: Value = serde_json::from_str(&empty).unwrap();
    assert_eq!(empty["services"], serde_json::json!({}));
    assert_eq!(empty["heartbeat_interval_ms"], 3_600_000);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let skew = (empty["now_unix_ms"].as_i64().unwrap() - now).abs();
    assert!(skew < 60_000, "the registry's clock is {skew} ms off");

    let log = FakeService::start(Behaviour::Healthy).await;
    registry.register(&log.record("log", &[])).await;
    let (_, overview) = registry.request(Method::GET, "/overview", "").await;
    let overview: Value = serde_json::from_str(&overview).unwrap();
    assert_eq!(overview["services"], registry.services().await);

    let (status, metrics) = registry.request(Method::GET, "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("sparrow_registry_registrations_total{kind=\"new\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn other_methods_are_refused_and_change_nothing() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    for path in ["/", "/overview", "/metrics"] {
        for method in [Method::POST, Method::DELETE, Method::PUT] {
            let (status, _) = registry
                .request(method.clone(), path, r#"{"Name":"a","Addr":"h:1"}"#)
                .await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    assert_eq!(registry.services().await, serde_json::json!({}));
    let (status, _) = registry.request(Method::GET, "/overview/x", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

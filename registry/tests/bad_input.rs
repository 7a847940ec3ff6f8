//! Bad input never changes the table: 400 with a one-line reason for a bad
//! record, 413 for a body over 64 KiB, 405 for a wrong method, 404 for an
//! unknown path.

use harness::{NO_HEARTBEAT, RegistryProcess};
use http::{Method, StatusCode};

#[tokio::test]
async fn bad_records_are_rejected_with_a_reason() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    registry
        .request(
            Method::POST,
            "/services",
            r#"{"Name":"log","Addr":"127.0.0.1:20002"}"#,
        )
        .await;
    let before = registry.services().await;

    let bad = [
        r#"{"Name":"visit","Addr":"#,
        "not json",
        "",
        "[]",
        r#"{"Addr":"127.0.0.1:1"}"#,
        r#"{"Name":"","Addr":"127.0.0.1:1"}"#,
        r#"{"Name":"a b","Addr":"127.0.0.1:1"}"#,
        r#"{"Name":"visit"}"#,
        r#"{"Name":"visit","Addr":"127.0.0.1"}"#,
        r#"{"Name":"visit","Addr":":80"}"#,
        r#"{"Name":"visit","Addr":"127.0.0.1:0"}"#,
        r#"{"Name":"visit","Addr":"127.0.0.1:99999"}"#,
        r#"{"Name":"visit","Addr":"127.0.0.1:http"}"#,
        r#"{"Name":"visit","Addr":"127.0.0.1:1","RequiredServices":"log"}"#,
        r#"{"Name":"log","Addr":"127.0.0.1:20002","RequiredServices":[""]}"#,
        r#"{"Name":7,"Addr":"127.0.0.1:1"}"#,
    ];
    for method in [Method::POST, Method::DELETE] {
        for body in bad {
            let (status, reason) = registry.request(method.clone(), "/services", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {body}: {reason}");
            assert!(reason.len() > 1 && reason.ends_with('\n'), "{reason:?}");
            assert_eq!(reason.lines().count(), 1, "{reason:?}");
        }
    }
    assert_eq!(registry.services().await, before);
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    let padding = "x".repeat(64 * 1024);
    let body = format!(r#"{{"Name":"visit","Addr":"127.0.0.1:1","Pad":"{padding}"}}"#);
    for method in [Method::POST, Method::DELETE] {
        let (status, reason) = registry.request(method, "/services", body.clone()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reason}");
        assert!(reason.ends_with('\n'));
    }
    assert_eq!(registry.services().await, serde_json::json!({}));

    // Just under the limit is fine.
    let padding = "x".repeat(60 * 1024);
    let body = format!(r#"{{"Name":"visit","Addr":"127.0.0.1:1","Pad":"{padding}"}}"#);
    let (status, _) = registry.request(Method::POST, "/services", body).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_methods_and_unknown_paths() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    for (method, path, expected) in [
        (Method::PUT, "/services", StatusCode::METHOD_NOT_ALLOWED),
        (Method::PATCH, "/services", StatusCode::METHOD_NOT_ALLOWED),
        (
            Method::POST,
            "/services/log",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::DELETE,
            "/services/log",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        // `GET /` is the page (tests/page.rs).
        (Method::GET, "/index.html", StatusCode::NOT_FOUND),
        (Method::POST, "/service", StatusCode::NOT_FOUND),
        (Method::GET, "/services/", StatusCode::NOT_FOUND),
        (Method::GET, "/services/log/x", StatusCode::NOT_FOUND),
        (Method::GET, "/heart-beat", StatusCode::NOT_FOUND),
    ] {
        let (status, reason) = registry.request(method.clone(), path, "").await;
        assert_eq!(status, expected, "{method} {path}: {reason}");
        assert!(reason.ends_with('\n'), "{reason:?}");
    }
    assert_eq!(registry.services().await, serde_json::json!({}));
}

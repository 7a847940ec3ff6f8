//! Bad input never changes the table: 400 with a one-line reason for a bad
//! record, 413 for a body over 64 KiB, 405 for a wrong method, 404 for an
//! unknown path, 501 for `CONNECT`.

use harness::{NO_HEARTBEAT, RegistryProcess};
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A registry that never checks on its instances, holding one of `log`
/// (at an address it never calls).
async fn with_a_log_instance() -> RegistryProcess {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    registry
        .request(
            Method::POST,
            "/services",
            r#"{"Name":"log","Addr":"127.0.0.1:20002"}"#,
        )
        .await;
    registry
}

#[tokio::test]
async fn bad_records_are_rejected_with_a_reason() {
    let registry = with_a_log_instance().await;
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
async fn a_record_is_a_json_object_only() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    for body in [
        r#"["arr","127.0.0.62:45110",["svc"]]"#,
        r#"["arr","127.0.0.62:45110"]"#,
        "[]",
        r#""arr""#,
        "null",
    ] {
        for method in [Method::POST, Method::DELETE] {
            let (status, reason) = registry.request(method.clone(), "/services", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {body}: {reason}");
            assert!(
                reason.contains("a record is a JSON object"),
                "{method} {body}: {reason}"
            );
            assert_eq!(reason.lines().count(), 1, "{reason:?}");
        }
    }
    assert_eq!(registry.services().await, serde_json::json!({}));
}

#[tokio::test]
async fn an_address_in_any_but_its_one_spelling_is_refused() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    let (status, reason) = registry
        .request(
            Method::POST,
            "/services",
            r#"{"Name":"svc","Addr":"127.0.0.62:45110"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reason}");
    let before = registry.services().await;
    for addr in [
        // Not HOST:PORT.
        "127.0.0.62:45110:45110",
        "[127.0.0.62:45110",
        "[127.0.0.62]:45110",
        // The same instance, spelled another way.
        "127.0.0.62:045110",
        "127.0.0.62:+45110",
        "127.0.0.62.:45110",
        "127.0.0.62%25:45110",
        "[0:0::1]:45110",
        // Read by the resolver as another address (87.0.0.62, 127.0.0.1).
        "0127.0.0.62:45110",
        "0x7f000001:45110",
        "127.1:45110",
        "[::1%lo]:45110",
        "[::ffff:127.0.0.62]:45110",
    ] {
        let body = serde_json::json!({"Name": "svc", "Addr": addr}).to_string();
        let (status, reason) = registry.request(Method::POST, "/services", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{addr}: {reason}");
        assert!(reason.contains("Addr"), "{addr}: {reason}");
        assert_eq!(reason.lines().count(), 1, "{reason:?}");
    }
    assert_eq!(registry.services().await, before);
}

/// `[::ffff:127.0.0.9]` is `127.0.0.9`, `LocalHost` is `localhost`: each
/// registered apart would be one instance twice. The refusal names the one
/// spelling.
#[tokio::test]
async fn the_refusal_of_another_spelling_names_the_one_spelling() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    for (addr, one) in [
        ("[::ffff:127.0.0.9]:32904", "127.0.0.9:32904"),
        ("LocalHost:32904", "localhost:32904"),
        ("[0:0::1]:32904", "[::1]:32904"),
    ] {
        let body = serde_json::json!({"Name": "svc", "Addr": addr}).to_string();
        let (status, reason) = registry.request(Method::POST, "/services", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{addr}: {reason}");
        assert!(reason.contains(&format!("{one:?}")), "{addr}: {reason}");
        assert_eq!(reason.lines().count(), 1, "{reason:?}");
    }
    assert_eq!(registry.services().await, serde_json::json!({}));
    for one in ["127.0.0.9:32904", "localhost:32904"] {
        let body = serde_json::json!({"Name": "svc", "Addr": one}).to_string();
        let (status, reason) = registry.request(Method::POST, "/services", body).await;
        assert_eq!(status, StatusCode::OK, "{one}: {reason}");
    }
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

/// `CONNECT` names an authority, not a path: its answer says the method is
/// not supported, not that some empty path has no route.
#[tokio::test]
async fn connect_is_refused_as_a_method_not_supported() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    let addr = registry.url("").trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n";
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0; 4096];
        // Until the headers and the one-line body are in.
        while !answer.ends_with(b"\n") || !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 501 "), "{answer}");
    assert!(
        answer.contains("CONNECT 127.0.0.1:9 is not supported"),
        "{answer}"
    );
}

/// `HEAD` is answered wherever `GET` is (RFC 9110), with the headers `GET`
/// would have and no body.
#[tokio::test]
async fn head_is_answered_wherever_get_is() {
    let registry = with_a_log_instance().await;
    let client = harness::http::Client::new();
    for path in ["/services", "/services/log", "/metrics", "/", "/overview"] {
        let url = registry.url(path);
        let get = client.get(&url).await.unwrap();
        let head = client.send(Method::HEAD, &url, &[], "").await.unwrap();
        assert_eq!((get.status, head.status), (200, 200), "{path}");
        assert!(head.body.is_empty(), "{path}");
        assert_eq!(
            head.headers.get("content-type"),
            get.headers.get("content-type"),
            "{path}"
        );
        if path.starts_with("/services") {
            assert_eq!(
                head.headers.get("content-length"),
                get.headers.get("content-length"),
                "{path}"
            );
        }
    }
    let allow = client
        .send(Method::PUT, &registry.url("/services/log"), &[], "")
        .await
        .unwrap();
    assert_eq!(allow.status, 405);
    assert_eq!(allow.headers["allow"], "GET, HEAD");
}

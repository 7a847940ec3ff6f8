//! The optional shared secret: with `--token`, writes without it are refused
//! with 401 and change nothing; reads and heartbeats stay open.

use std::time::Duration;

use harness::{DEADLINE, Launch, NO_HEARTBEAT, RegistryProcess};
use http::{Method, StatusCode};
use protocol::http::{http_client, send_record};
use protocol::record::ServiceRecord;
use protocol::token::Token;

/// A registry with `--token token`, sending no heartbeats.
fn registry_with_token(token: &str) -> RegistryProcess {
    let mut args = NO_HEARTBEAT.to_vec();
    args.extend(["--token", token]);
    RegistryProcess::start(&args)
}

#[tokio::test]
async fn writes_without_the_token_answer_401() {
    let registry = registry_with_token("s3cret");
    let url = registry.url("/services");
    let record = ServiceRecord::new("log", "127.0.0.1:9", Vec::new());
    let http = http_client();
    let timeout = Duration::from_secs(10);

    for token in [Token::default(), Token::new(Some("wrong".into()))] {
        for method in [Method::POST, Method::DELETE] {
            let (status, body) = send_record(&http, method, &url, &record, timeout, &token)
                .await
                .unwrap();
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(body, "missing or wrong token\n");
        }
    }
    assert!(registry.addrs_of("log").await.is_empty());

    let token = Token::new(Some("s3cret".into()));
    let (status, _) = send_record(&http, Method::POST, &url, &record, timeout, &token)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(registry.addrs_of("log").await, ["127.0.0.1:9"]);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let registry = registry_with_token("s3cret");
    let url = registry.url("/services");
    let client = harness::http::Client::new();
    for (port, scheme) in [(1, "bearer"), (2, "BEARER"), (3, "BeArEr")] {
        let record = format!(r#"{{"Name":"log","Addr":"127.0.0.1:{port}"}}"#);
        let authorization = format!("{scheme} s3cret");
        let reply = client
            .send(
                Method::POST,
                &url,
                &[("authorization", authorization.as_str())],
                record,
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{scheme}: {}", reply.text());
    }
    assert_eq!(registry.addrs_of("log").await.len(), 3);
}

#[test]
fn a_token_no_header_can_carry_is_refused_at_start() {
    // Empty, it would turn authentication off; not visible ASCII, nobody
    // could ever send it.
    for (token, problem) in [("", "empty"), ("sécret", "not visible ASCII")] {
        let mut registry = Launch::new("registry", env!("CARGO_BIN_EXE_registry"))
            .args(["--addr", "127.0.0.1:0", "--token", token])
            .spawn()
            .unwrap();
        let status = registry.wait_exit(DEADLINE);
        assert!(
            status.is_some_and(|s| !s.success()),
            "--token {token:?} was accepted: {status:?}"
        );
        let log = registry.log();
        let first = log.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error:") && first.contains("--token") && first.contains(problem),
            "{token:?}: {log}"
        );
    }
}

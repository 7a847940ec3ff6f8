//! The optional shared secret: with `--token`, writes without it are refused
//! with 401 and change nothing; reads and heartbeats stay open.

use std::time::Duration;

use harness::{NO_HEARTBEAT, RegistryProcess};
use http::{Method, StatusCode};
use protocol::http::{http_client, send_record};
use protocol::record::ServiceRecord;
use protocol::token::Token;

#[tokio::test]
async fn writes_without_the_token_answer_401() {
    let mut args = NO_HEARTBEAT.to_vec();
    args.extend(["--token", "s3cret"]);
    let registry = RegistryProcess::start(&args);
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

//! SIGINT and SIGTERM stop the registry cleanly, and `--help` documents
//! every flag.

mod common;

use std::process::Command;

use common::{DEADLINE, NO_HEARTBEAT, RegistryProcess};
use http::Method;

async fn stops_cleanly_on(signal: &str) {
    let mut registry = RegistryProcess::start(NO_HEARTBEAT);
    // Up and serving before the signal.
    let record = r#"{"Name":"log","Addr":"127.0.0.1:20002"}"#;
    registry.request(Method::POST, "/services", record).await;
    registry.signal(signal);
    let status = registry.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", registry.logs());
}

#[tokio::test]
async fn sigterm_exits_0() {
    stops_cleanly_on("TERM").await;
}

#[tokio::test]
async fn sigint_exits_0() {
    stops_cleanly_on("INT").await;
}

#[test]
fn help_documents_every_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_registry"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--addr",
        "--heartbeat-interval",
        "--heartbeat-attempts",
        "--heartbeat-retry-delay",
        "--heartbeat-concurrency",
        "--notify-timeout",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

//! SIGINT and SIGTERM stop the registry cleanly, and `--help` documents
//! every flag.

use std::process::Command;

use harness::{DEADLINE, NO_HEARTBEAT, RegistryProcess, Signal};
use http::Method;

async fn stops_cleanly_on(signal: Signal) {
    let mut registry = RegistryProcess::start(NO_HEARTBEAT);
    // Up and serving before the signal.
    let record = r#"{"Name":"log","Addr":"127.0.0.1:20002"}"#;
    registry.request(Method::POST, "/services", record).await;
    registry.proc.signal(signal).unwrap();
    let status = registry
        .proc
        .wait_exit(DEADLINE)
        .expect("the registry exits");
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}\n{}",
        registry.proc.log()
    );
}

#[tokio::test]
async fn sigterm_exits_0() {
    stops_cleanly_on(Signal::SIGTERM).await;
}

#[tokio::test]
async fn sigint_exits_0() {
    stops_cleanly_on(Signal::SIGINT).await;
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

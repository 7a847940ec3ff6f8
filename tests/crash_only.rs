//! A host whose background task dies stops, cleanly and loudly: the plugin
//! swapper or the registration watchdog ending (a panic, a bug) would leave
//! it serving but never swapping again, or never coming back once the
//! registry forgot it; the server ending, registered but answering nothing. It deregisters, lets requests in flight finish and
//! fails with an error that names the task, for its supervisor to start it
//! again.
//!
//! Nothing from outside makes those tasks panic, so the tests arm the
//! host's fault points (`fail::fail_point!`, compiled in for the tests
//! only). The points are process-wide: this binary runs its tests one at a
//! time, and no other test binary arms them.

use std::time::Duration;

use clap::Parser;
use harness::{RegistryProcess, eventually, in_process_host_args};
use host::{Cli, Controller, Host, control};

/// Fault points are global: one test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A host running in this process, and how it ended (its error as the
/// binary prints it).
type Running = tokio::task::JoinHandle<Result<(), String>>;

/// A visit host registered with `registry`, running in this process.
async fn registered_host(registry: &RegistryProcess) -> (String, Controller, Running) {
    let registry_url = registry.url("");
    let cli = Cli::parse_from(in_process_host_args(
        "visit",
        &registry_url,
        &["--stop-grace", "0s"],
    ));
    let host = Host::start(cli).await.unwrap();
    let addr = host.local_addr().to_string();
    let (controller, control) = control();
    let running =
        tokio::spawn(async move { host.run(control).await.map_err(|e| format!("{e:#}")) });
    eventually("the host to register", || async {
        registry.addrs_of("visit").await.contains(&addr)
    })
    .await;
    (addr, controller, running)
}

/// Arms the fault point `point` of a registered host, has `trigger` reach
/// it (given the host's controller and address), and checks that the host
/// deregisters and fails naming `task` and its panic.
async fn dies_naming(point: &str, trigger: impl FnOnce(&Controller, &str), task: &str) {
    let registry = RegistryProcess::start(&[]);
    let (addr, controller, running) = registered_host(&registry).await;

    fail::cfg(point, "panic").unwrap();
    trigger(&controller, &addr);
    let ended = tokio::time::timeout(Duration::from_secs(30), running).await;
    fail::remove(point);
    let error = ended
        .expect("the host stops by itself")
        .expect("the host's task does not panic")
        .expect_err("the host fails");

    assert!(error.contains(task), "{error}");
    assert!(error.contains("panicked"), "{error}");
    assert!(
        !registry.addrs_of("visit").await.contains(&addr),
        "deregistered on the way out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_watchdog_dies_deregisters_and_fails_naming_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    // The watchdog reaches its point at its next check.
    dies_naming("host::watchdog", |_, _| {}, "registration watchdog").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_swapper_dies_deregisters_and_fails_naming_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    // What SIGHUP does: load the plugin file again.
    dies_naming("host::swap", |c, _| c.reload(), "plugin swapper").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_server_dies_deregisters_and_fails_naming_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    // The server reaches its point when it takes a connection.
    let connect = |_: &Controller, addr: &str| {
        let _ = std::net::TcpStream::connect(addr);
    };
    dies_naming("host::accept", connect, "the server task").await;
}

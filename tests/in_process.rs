//! The host as a library: a registry and a host started in this process on
//! `127.0.0.1:0`, served, and stopped through a `Controller`, with no
//! process, signal or log parsing in between. Tests that need none of those
//! can be written this way, and run in milliseconds.

use std::time::Duration;

use clap::Parser;
use harness::in_process_host_args;
use host::{Cli, Host, control};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

/// A registry on a free port, stopped when the returned sender is dropped.
async fn start_registry() -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(registry::serve(
        listener,
        registry::Config::default(),
        async {
            let _ = stopped.await;
        },
    ));
    (url, stop)
}

async fn get(url: &str) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_serves_in_process_and_stops_when_told() {
    let (registry, _registry_stop) = start_registry().await;
    let cli = Cli::parse_from(in_process_host_args("visit", &registry, &[]));
    let host = Host::start(cli).await.unwrap();
    let addr = host.local_addr();
    let (controller, control) = control();
    let running = tokio::spawn(host.run(control));

    // Registered: the registry lists it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(&format!("{registry}/services/visit")).await;
        if status == 200 && body.contains(&addr.to_string()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never registered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _) = get(&format!("http://{addr}/heart-beat")).await;
    assert_eq!(status, 200);

    controller.stop();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the host stops")
        .unwrap()
        .unwrap();
    // Deregistered on the way out.
    assert_eq!(get(&format!("{registry}/services/visit")).await.0, 404);
}

//! A bug that panics while a notification is delivered costs that
//! notification only: the dependent hears of every later change. The drain
//! task of the dependent's queue would otherwise end with the panic, and
//! the queue, left behind, would never be drained again.
//!
//! Nothing from outside makes a delivery panic, so the test arms the
//! registry's fault point (`fail::fail_point!`, compiled in for the tests
//! only); the point is process-wide, so this binary holds one test.

use harness::http::Client;
use harness::{Behaviour, FakeService, counter, eventually};
use http::Method;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_panics_costs_that_notification_only() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(registry::serve(
        listener,
        registry::Config::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let http = Client::new();
    let register = |record: protocol::record::ServiceRecord| {
        let (http, url) = (http.clone(), format!("{registry}/services"));
        async move {
            let body = serde_json::to_vec(&record).unwrap();
            let reply = http.send_json(Method::POST, &url, body).await.unwrap();
            assert_eq!(reply.status, 200, "{}", reply.text());
        }
    };
    let visit = FakeService::start(Behaviour::Healthy).await;
    register(visit.record("visit", &["log"])).await;

    fail::cfg("registry::deliver", "1*panic").unwrap();
    let first = FakeService::start(Behaviour::Healthy).await;
    register(first.record("log", &[])).await;
    let second = FakeService::start(Behaviour::Healthy).await;
    register(second.record("log", &[])).await;

    eventually("the dependent to hear of the second log", || async {
        visit.notifications_about(&second.addr) == [(Method::POST, "log".to_string())]
    })
    .await;
    fail::remove("registry::deliver");
    assert!(visit.notifications_about(&first.addr).is_empty());
    let metrics = http
        .get(&format!("{registry}/metrics"))
        .await
        .unwrap()
        .text();
    let failed = r#"sparrow_registry_notifications_total{result="failed"}"#;
    assert_eq!(counter(&metrics, failed), 1, "{metrics}");
}

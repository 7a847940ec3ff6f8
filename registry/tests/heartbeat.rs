//! Heartbeats: concurrent, bounded per attempt, and evicting after the last
//! failed attempt — also at scale, without the registry stalling.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use harness::{
    Behaviour, FAST_HEARTBEATS, FakeService, Launch, RegistryProcess, addrs, binary, counter,
    eventually, eventually_some,
};
use http::Method;
use protocol::registry_client::RegistryClient;

/// 1,000 instances, half of which die: the registry keeps answering, and
/// every dead one is gone within interval + attempts × retry-delay + 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_instances_half_dead_are_evicted_in_time() {
    // Off: this is about the sweep's speed, and a live instance slow to
    // answer once under load would tip half into more than half.
    let registry = RegistryProcess::start(&["--eviction-guard", "100"]);
    let client = RegistryClient::new(&registry.url(""), Duration::from_secs(10)).unwrap();

    let mut live = Vec::new();
    let mut doomed = Vec::new();
    for _ in 0..500 {
        live.push(FakeService::start(Behaviour::Healthy).await);
        // On their own loopback address: a port they free cannot be
        // reused by another test's service that would then answer for them.
        doomed.push(FakeService::start_on("127.0.0.3", Behaviour::Healthy).await);
    }
    for service in live.iter().chain(&doomed) {
        client.register(&service.record("svc", &[])).await.unwrap();
    }
    eventually("every instance heart-beaten once", || async {
        live.iter().chain(&doomed).all(|s| s.heartbeats() > 0)
    })
    .await;

    for service in &mut doomed {
        service.stop().await;
    }
    let dead_since = Instant::now();
    let doomed_addrs: HashSet<String> = doomed.iter().map(|s| s.addr.clone()).collect();
    let left = eventually_some("every dead instance evicted", || async {
        // Each poll is a request that must be answered.
        let left = registry.addrs_of("svc").await;
        (!left.iter().any(|a| doomed_addrs.contains(a))).then_some(left)
    })
    .await;
    let took = dead_since.elapsed();
    eprintln!("500 dead instances evicted {took:?} after they died");
    let h = FAST_HEARTBEATS;
    let bound = h.interval + h.retry_delay * h.attempts + Duration::from_secs(1);
    assert!(
        took <= bound,
        "dead instances evicted after {took:?}, bound {bound:?}"
    );

    let live_addrs: HashSet<String> = live.iter().map(|s| s.addr.clone()).collect();
    assert_eq!(left.into_iter().collect::<HashSet<_>>(), live_addrs);
}

/// An instance that accepts connections and never answers fails each
/// attempt at the timeout and is evicted; its dependents are told.
#[tokio::test]
async fn an_instance_that_never_answers_is_evicted() {
    let registry = RegistryProcess::start(&[]);
    let silent = FakeService::start(Behaviour::Hang).await;
    let dependent = FakeService::start(Behaviour::Healthy).await;
    registry
        .register(&dependent.record("visit", &["log"]))
        .await;
    registry.register(&silent.record("log", &[])).await;

    eventually("the silent instance marked failing", || async {
        registry.services().await["log"][0]["health"] == "failing"
    })
    .await;
    eventually(
        "the silent instance evicted and its dependent told",
        || async {
            addrs(&registry.services().await["log"]).is_empty()
                && dependent.notifications_about(&silent.addr)
                    == [
                        (Method::POST, "log".to_string()),
                        (Method::DELETE, "log".to_string()),
                    ]
        },
    )
    .await;
    // The healthy one stays.
    assert_eq!(registry.addrs_of("visit").await, [dependent.addr.as_str()]);
}

/// The protocol's heartbeat answer is empty: one that sends a megabyte is
/// not read (64 heartbeats run at once) and counts as a failed attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_answered_with_a_megabyte_fails_and_evicts() {
    let registry = RegistryProcess::start(&[]);
    let client = RegistryClient::new(&registry.url(""), Duration::from_secs(10)).unwrap();
    let chatty = FakeService::start(Behaviour::Chatty).await;
    client
        .register(&chatty.record("chatty", &[]))
        .await
        .unwrap();
    eventually("heart-beaten", || async { chatty.heartbeats() > 0 }).await;
    eventually("evicted", || async {
        registry.addrs_of("chatty").await.is_empty()
    })
    .await;
}

/// More idle clients than the registry has file descriptors: those past
/// what it serves at once wait in the kernel's backlog, and it keeps the
/// descriptors its heartbeats need, so a live instance is neither left
/// unchecked nor evicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_past_the_open_file_limit_leave_heartbeats_alone() {
    const OPEN_FILES: u32 = 320;
    let script = format!("ulimit -n {OPEN_FILES} && exec \"$0\" \"$@\"");
    let mut launch = Launch::new("registry", "/bin/sh")
        .args(["-c", &script])
        .arg(binary("registry"))
        // Idle clients stay connected for the whole test.
        .args(["--addr", "127.0.0.1:0", "--header-timeout", "1h"]);
    for (flag, value) in FAST_HEARTBEATS.flags() {
        launch = launch.args([flag, value.as_str()]);
    }
    let registry = RegistryProcess::of(launch.start().unwrap_or_else(|e| panic!("{e:#}")));
    let client = RegistryClient::new(&registry.url(""), Duration::from_secs(10)).unwrap();
    let live = FakeService::start(Behaviour::Healthy).await;
    client.register(&live.record("svc", &[])).await.unwrap();

    // As many as connect: the registry serves some, the kernel's backlog
    // holds more, and a connection beyond both times out.
    let addr = registry.proc.addr();
    let idle: Vec<std::net::TcpStream> = (0..OPEN_FILES + 100)
        .map_while(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok())
        .collect();
    eprintln!("{} idle clients connected", idle.len());
    // Long enough for an eviction: FAST_HEARTBEATS give up on an instance
    // after 1 s + 2 × 200 ms.
    let before = live.heartbeats();
    eventually(
        "three more heartbeats with every descriptor asked for",
        || async { live.heartbeats() >= before + 3 },
    )
    .await;
    drop(idle);
    assert_eq!(registry.addrs_of("svc").await, [live.addr.as_str()]);
    assert!(
        registry.proc.log().contains("open-file limit is 320"),
        "{}",
        registry.proc.log()
    );
}

/// On etcd a registration's id is its key's mod revision, which every
/// registration written in one transaction shares: a replica writes the
/// registrations waiting for it in one (`store/etcd/commit.rs`). Each
/// instance must still be heart-beaten, and a dead one evicted, whatever
/// the others sharing its id do. Written here in one transaction straight
/// into etcd, so that the sharing does not hang on timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_registered_in_one_etcd_transaction_are_each_heart_beaten() {
    use etcd_client::{Client, Txn, TxnOp};
    use harness::etcd::{EtcdCluster, registry_replica};

    let (etcd, registry) = tokio::task::spawn_blocking(|| {
        let etcd = EtcdCluster::start(1);
        let registry = RegistryProcess::of(registry_replica(&etcd, "127.0.0.1:0", &[]));
        (etcd, registry)
    })
    .await
    .unwrap();
    let alive = FakeService::start(Behaviour::Healthy).await;
    let mut dead = Vec::new();
    for _ in 0..2 {
        // On their own loopback address, as above: nobody takes the port.
        let mut service = FakeService::start_on("127.0.0.3", Behaviour::Healthy).await;
        service.stop().await;
        dead.push(service);
    }
    // The live one first: the sweep meets it first among those sharing
    // the id.
    let records = [
        alive.record("a-alive", &[]),
        dead[0].record("b-dead", &[]),
        dead[1].record("c-dead", &[]),
    ];
    let puts: Vec<TxnOp> = records
        .iter()
        .map(|record| {
            let key = format!("/sparrow/services/{}/{}", record.name, record.addr);
            TxnOp::put(key, serde_json::to_vec(record).unwrap(), None)
        })
        .collect();
    let mut client = Client::connect([etcd.member_url(0)], None).await.unwrap();
    client.txn(Txn::new().and_then(puts)).await.unwrap();

    eventually("the dead instances evicted, the live one kept", || async {
        let services = registry.services().await;
        services.get("b-dead").is_none()
            && services.get("c-dead").is_none()
            && addrs(&services["a-alive"]) == [alive.addr.clone()]
    })
    .await;
}

/// Most of the table failing at once is more likely the registry cut off
/// from it than the instances dead: their evictions are withheld, and made
/// once enough of the table answers again (here: a deploy of new ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_are_withheld_while_most_of_the_table_fails() {
    // A guard on tables of any size: the dead are registered first, so
    // that whenever a sweep comes, more than half of what it sees is dead.
    let registry = RegistryProcess::start(&["--eviction-guard-min", "1"]);
    let client = RegistryClient::new(&registry.url(""), Duration::from_secs(10)).unwrap();
    for _ in 0..8 {
        // Its own loopback address: no other test's service takes the port.
        let mut service = FakeService::start_on("127.0.0.4", Behaviour::Healthy).await;
        service.stop().await;
        client.register(&service.record("svc", &[])).await.unwrap();
    }
    let mut live = Vec::new();
    for _ in 0..2 {
        live.push(FakeService::start(Behaviour::Healthy).await);
    }
    for service in &live {
        client.register(&service.record("svc", &[])).await.unwrap();
    }
    let withheld = || async {
        let (_, metrics) = registry.request(Method::GET, "/metrics", "").await;
        counter(&metrics, "sparrow_registry_evictions_withheld_total")
    };
    eventually("every dead instance's eviction withheld", || async {
        withheld().await >= 8
    })
    .await;
    let listed = registry.services().await;
    assert_eq!(addrs(&listed["svc"]).len(), 10, "{listed}");
    let failing = listed["svc"].as_array().unwrap().iter();
    let failing = failing.filter(|i| i["health"] == "failing").count();
    assert_eq!(failing, 8, "{listed}");

    // Ten more answer: 8 failing of 20 is not more than half.
    for _ in 0..10 {
        let service = FakeService::start(Behaviour::Healthy).await;
        client.register(&service.record("svc", &[])).await.unwrap();
        live.push(service);
    }
    let live_addrs: HashSet<String> = live.iter().map(|s| s.addr.clone()).collect();
    eventually("the dead evicted, the live kept", || async {
        let left: HashSet<String> = registry.addrs_of("svc").await.into_iter().collect();
        left == live_addrs
    })
    .await;
}

//! What a record may hold and what the table may hold are bounded, so that
//! every registration answer, `*` included, fits in what a host reads of
//! it (16 MiB): a record past its bounds answers 400 naming the bound, a
//! registration past the table's 507; neither stores anything. The table on
//! etcd too, shared by replicas that register at once.

use harness::etcd::{EtcdCluster, registry_replica};
use harness::{NO_HEARTBEAT, RegistryProcess, eventually};
use http::{Method, StatusCode};
use protocol::http::MAX_ANSWER;
use protocol::record::{MAX_NAME, MAX_REQUIRED, MAX_REQUIRED_BYTES, parse_instances};
use serde_json::json;

/// A registration of `body`: its status and its one-line reason.
async fn post(registry: &RegistryProcess, body: String) -> (StatusCode, String) {
    registry.request(Method::POST, "/services", body).await
}

fn one_line(reason: &str) {
    assert!(reason.ends_with('\n'), "{reason:?}");
    assert_eq!(reason.lines().count(), 1, "{reason:?}");
}

#[tokio::test]
async fn a_record_past_its_bounds_is_refused_naming_the_bound() {
    let registry = RegistryProcess::start(NO_HEARTBEAT);
    let addr = "127.0.0.1:1";
    let long_name = "n".repeat(MAX_NAME + 1);
    let many: Vec<String> = (0..=MAX_REQUIRED).map(|i| format!("s{i}")).collect();
    let long_list: Vec<String> = (0..MAX_REQUIRED_BYTES / 200 + 1)
        .map(|i| format!("{i:0200}"))
        .collect();
    for (record, bound) in [
        (json!({"Name": long_name, "Addr": addr}), "253"),
        (
            json!({"Name": "a", "Addr": addr, "RequiredServices": many}),
            "256",
        ),
        (
            json!({"Name": "a", "Addr": addr, "RequiredServices": long_list}),
            "16384",
        ),
    ] {
        let (status, reason) = post(&registry, record.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reason}");
        assert!(reason.contains(bound), "{bound}: {reason}");
        one_line(&reason);
    }
    assert_eq!(registry.services().await, json!({}));

    let longest = json!({"Name": "n".repeat(MAX_NAME), "Addr": addr});
    let (status, reason) = post(&registry, longest.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{reason}");
}

#[tokio::test]
async fn past_max_instances_a_registration_is_refused_and_stores_nothing() {
    let registry = RegistryProcess::start(&["--heartbeat-interval", "1h", "--max-instances", "3"]);
    let record =
        |port: u16| json!({"Name": "svc", "Addr": format!("127.0.0.1:{port}")}).to_string();
    for port in 1..=3 {
        let (status, reason) = post(&registry, record(port)).await;
        assert_eq!(status, StatusCode::OK, "{reason}");
    }
    let (status, reason) = post(&registry, record(4)).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{reason}");
    assert!(reason.contains("--max-instances"), "{reason}");
    one_line(&reason);
    assert_eq!(registry.addrs_of("svc").await.len(), 3);

    // A known instance registers again; one that left makes room.
    let (status, reason) = post(&registry, record(3)).await;
    assert_eq!(status, StatusCode::OK, "{reason}");
    let (status, _) = registry
        .request(Method::DELETE, "/services", record(1))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, reason) = post(&registry, record(4)).await;
    assert_eq!(status, StatusCode::OK, "{reason}");
}

/// The audit's case: records as large as they may be, registered until
/// the table is full; then a `*` registration still gets an answer a host
/// reads whole.
#[tokio::test]
async fn a_full_table_answers_a_star_registration_within_what_a_host_reads() {
    fill_then_register_everything(&RegistryProcess::start(NO_HEARTBEAT)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_table_on_etcd_answers_a_star_registration_within_what_a_host_reads() {
    let (_etcd, replicas) = on_etcd(1, NO_HEARTBEAT).await;
    fill_then_register_everything(&replicas[0]).await;
}

/// Replicas registering at once on one etcd cannot together pass the
/// table's bound: each registration is made only if the table is still the
/// one its replica checked.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_registering_at_once_keep_the_bound_together() {
    let flags = &["--heartbeat-interval", "1h", "--max-instances", "3"];
    let (_etcd, replicas) = on_etcd(2, flags).await;
    let answers = register_at_once((1..=12).map(|port| {
        let record = json!({"Name": "svc", "Addr": format!("127.0.0.1:{port}")});
        (&replicas[port % 2], record)
    }))
    .await;
    let taken = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(taken, 3, "{answers:?}");
    for (status, reason) in &answers {
        assert!(
            [StatusCode::OK, StatusCode::INSUFFICIENT_STORAGE].contains(status),
            "{reason}"
        );
    }
    for replica in &replicas {
        eventually("each replica lists the 3 instances taken", || async {
            replica.addrs_of("svc").await.len() == 3
        })
        .await;
    }
}

/// Many registrations at once on one replica all succeed, well within
/// `--etcd-timeout`: checked against the same copy, they must not fail
/// each other's checks (they did, one success per round trip, when each
/// was its own transaction).
#[tokio::test(flavor = "multi_thread")]
async fn registrations_at_once_on_one_replica_do_not_fail_each_other() {
    const AT_ONCE: u16 = 300;
    let flags = &["--heartbeat-interval", "1h", "--etcd-timeout", "1s"];
    let (_etcd, replicas) = on_etcd(1, flags).await;
    let answers = register_at_once((1..=AT_ONCE).map(|port| {
        let record = json!({"Name": "svc", "Addr": format!("127.0.0.1:{port}")});
        (&replicas[0], record)
    }))
    .await;
    let failed: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s != StatusCode::OK)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {AT_ONCE} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    // Reads come from the replica's copy, which the watch brings up to date.
    eventually("the replica lists every instance registered", || async {
        replicas[0].addrs_of("svc").await.len() == usize::from(AT_ONCE)
    })
    .await;
}

/// A record requiring as many services as a record may is answered on
/// etcd as in memory: every one listed, though one read per service would
/// pass the operations etcd takes in one transaction (128).
#[tokio::test(flavor = "multi_thread")]
async fn a_record_requiring_the_most_services_is_answered_on_etcd() {
    let (_etcd, replicas) = on_etcd(1, NO_HEARTBEAT).await;
    let (status, reason) = post(
        &replicas[0],
        json!({"Name": "s7", "Addr": "127.0.0.1:7"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reason}");
    let required: Vec<String> = (0..MAX_REQUIRED).map(|i| format!("s{i}")).collect();
    let record = json!({"Name": "many", "Addr": "127.0.0.1:1", "RequiredServices": required});
    let (status, answer) = post(&replicas[0], record.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let instances = parse_instances(answer.as_bytes()).expect("a registration answer");
    assert_eq!(instances.len(), MAX_REQUIRED, "{answer}");
    assert_eq!(instances["s7"].len(), 1, "{answer}");
    assert!(instances["s0"].is_empty(), "{answer}");
}

/// An etcd that takes fewer operations in a transaction than its default
/// 128: told so, a replica keeps within it the transactions its
/// registrations share, and their reads.
#[tokio::test(flavor = "multi_thread")]
async fn an_etcd_taking_fewer_operations_per_transaction_is_kept_to_them() {
    const AT_ONCE: u16 = 40;
    let flags = &["--heartbeat-interval", "1h", "--etcd-max-txn-ops", "8"];
    let (_etcd, replicas) = on_etcd_with(&["--max-txn-ops", "8"], 1, flags).await;
    let required: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
    let answers = register_at_once((1..=AT_ONCE).map(|port| {
        let record = json!({
            "Name": format!("s{}", port % 6),
            "Addr": format!("127.0.0.1:{port}"),
            "RequiredServices": required,
        });
        (&replicas[0], record)
    }))
    .await;
    for (status, answer) in answers {
        assert_eq!(status, StatusCode::OK, "{answer}");
        let instances = parse_instances(answer.as_bytes()).expect("a registration answer");
        assert_eq!(instances.len(), 6, "{answer}");
    }
    let listed = || async {
        let table = replicas[0].services().await;
        let lists = table.as_object().unwrap().values();
        lists.map(|v| v.as_array().unwrap().len()).sum::<usize>()
    };
    eventually("the replica lists every instance registered", || async {
        listed().await == usize::from(AT_ONCE)
    })
    .await;
}

/// An etcd that takes smaller requests than its default 1.5 MiB: told so,
/// a replica keeps within it the transactions its registrations share,
/// large records and all.
#[tokio::test(flavor = "multi_thread")]
async fn an_etcd_taking_smaller_requests_is_kept_to_them() {
    const AT_ONCE: u16 = 24;
    let flags = &[
        "--heartbeat-interval",
        "1h",
        "--etcd-max-request-bytes",
        "131072",
    ];
    let (_etcd, replicas) = on_etcd_with(&["--max-request-bytes", "131072"], 1, flags).await;
    // About 15 KiB of required names in each record: 24 of them take about
    // 370 KiB, so they go in several transactions.
    let required: Vec<String> = (0..60).map(|i| format!("{i:0250}")).collect();
    let answers = register_at_once((1..=AT_ONCE).map(|port| {
        let record = json!({
            "Name": "big",
            "Addr": format!("127.0.0.1:{port}"),
            "RequiredServices": required,
        });
        (&replicas[0], record)
    }))
    .await;
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::OK, "{answer}");
    }
    eventually("the replica lists every instance registered", || async {
        replicas[0].addrs_of("big").await.len() == usize::from(AT_ONCE)
    })
    .await;
}

/// Sends every registration at once, each to its replica; their statuses
/// and bodies, in order.
async fn register_at_once<'r>(
    registrations: impl Iterator<Item = (&'r RegistryProcess, serde_json::Value)>,
) -> Vec<(StatusCode, String)> {
    let client = harness::http::Client::new();
    let sent: Vec<_> = registrations
        .map(|(replica, record)| {
            let (client, url) = (client.clone(), replica.url("/services"));
            tokio::spawn(async move {
                let reply = client.send_json(Method::POST, &url, record.to_string());
                let reply = reply.await.expect("an answer");
                (StatusCode::from_u16(reply.status).unwrap(), reply.text())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for answer in sent {
        answers.push(answer.await.expect("a registration"));
    }
    answers
}

/// A one-member etcd and `count` registry replicas on it with `flags`,
/// started off the runtime (the harness waits for them blocking).
async fn on_etcd(
    count: usize,
    flags: &'static [&'static str],
) -> (EtcdCluster, Vec<RegistryProcess>) {
    on_etcd_with(&[], count, flags).await
}

/// [`on_etcd`], etcd given the flags `etcd_flags`.
async fn on_etcd_with(
    etcd_flags: &'static [&'static str],
    count: usize,
    flags: &'static [&'static str],
) -> (EtcdCluster, Vec<RegistryProcess>) {
    tokio::task::spawn_blocking(move || {
        let etcd = EtcdCluster::start_with(1, etcd_flags);
        let replicas = (0..count)
            .map(|_| RegistryProcess::of(registry_replica(&etcd, "127.0.0.1:0", flags)))
            .collect();
        (etcd, replicas)
    })
    .await
    .expect("etcd and its replicas start")
}

/// Registers the largest records until `registry` refuses one for a full
/// table, then, once one left, a record requiring `*`: its answer fits in
/// what a host reads.
async fn fill_then_register_everything(registry: &RegistryProcess) {
    // Quotes are escaped in JSON: the most bytes a name takes in answers.
    let quotes = |n: usize| "\"".repeat(n);
    let required: Vec<String> = (0..MAX_REQUIRED_BYTES / MAX_NAME)
        .map(|i| format!("r{i}{}", quotes(MAX_NAME - 4)))
        .collect();
    let filler = |n: usize| {
        json!({
            "Name": format!("{n}{}", quotes(MAX_NAME - 6)),
            "Addr": format!("127.0.0.1:{n}"),
            "RequiredServices": required,
        })
        .to_string()
    };
    // More than 16 MiB of them, were they all taken.
    let enough = MAX_ANSWER / filler(1).len() * 2;
    let mut full = None;
    for n in 1..=enough {
        let (status, reason) = post(registry, filler(n)).await;
        if status != StatusCode::OK {
            full = Some((n, status, reason));
            break;
        }
    }
    let (refused, status, reason) = full.expect("the table never filled");
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{reason}");
    assert!(reason.contains("full"), "{reason}");
    one_line(&reason);
    let listed = |table: &serde_json::Value| table.as_object().map_or(0, |s| s.len());
    let table = registry.services().await;
    assert_eq!(listed(&table), refused - 1, "the refused record was stored");

    // Room for one more, as a host that was refused finds after its
    // retries when an instance leaves.
    let (status, _) = registry
        .request(Method::DELETE, "/services", filler(1))
        .await;
    assert_eq!(status, StatusCode::OK);
    let gateway = json!({"Name": "gateway", "Addr": "127.0.0.1:2", "RequiredServices": ["*"]});
    let (status, answer) = post(registry, gateway.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.len() <= MAX_ANSWER, "{} bytes", answer.len());
    let instances = parse_instances(answer.as_bytes()).expect("a registration answer");
    assert_eq!(instances.len(), refused - 2);
}

//! The registry on etcd, against a real three-member etcd cluster on
//! loopback: two registry replicas share the table; hosts know both.
//!
//! Under load through gateway → visit → log: killing the leading replica,
//! killing etcd members, losing etcd's quorum and getting it back,
//! restarting every replica. And concurrent writes to both replicas, which
//! must leave one table and every dependent agreeing with it, a replica
//! killed amid registrations, which must lose none it acknowledged, and a
//! replica cut off with a minority of etcd, which must not pass off its
//! copy as the truth.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::etcd::{EtcdCluster, host_of, leader_of, registry_replica, registry_replica_on};
use harness::load::Load;
use harness::{Proc, Signal, TempDir, counter, get, plugin, poll_until, registered, send, stub};
use http_body_util::{BodyExt, Full};

const SETTLE: Duration = Duration::from_secs(30);
/// README's bound for the replicas' 2 s lease (`registry_replica`): the
/// lease expires within the TTL, a follower looks every quarter of it;
/// plus 1.5 s for etcd round trips on a loaded machine.
const TAKEOVER_BOUND: Duration = Duration::from_millis(2500 + 1500);
/// The harness's heartbeats: 1 s interval, 2 attempts 200 ms apart; one
/// more interval for a sweep already under way.
const EVICTION_BOUND: Duration = Duration::from_millis(1000 + 2 * 200 + 1000 + 1000);
const CLIENTS: usize = 8;

/// A loopback address nothing listens on right now.
fn free_addr() -> String {
    harness::free_addr().unwrap().to_string()
}

/// Two replicas, two log hosts, visit and gateway, all settled.
struct System {
    replicas: Vec<Proc>,
    logs: Vec<Proc>,
    visit: Proc,
    gateway: Proc,
    _dir: TempDir,
}

impl System {
    fn start(etcd: &EtcdCluster, replica_addrs: &[String], host_args: &[&str]) -> System {
        let replicas: Vec<Proc> = replica_addrs
            .iter()
            .map(|addr| registry_replica(etcd, addr, &[]))
            .collect();
        let registries: Vec<&Proc> = replicas.iter().collect();
        let dir = TempDir::new("etcd-system");
        let log_args = [host_args, &["--dir", dir.path().to_str().unwrap()]].concat();
        let logs = (0..2)
            .map(|_| host_of(&plugin("log"), &registries, &log_args))
            .collect();
        let visit = host_of(&plugin("visit"), &registries, host_args);
        let gateway = host_of(&plugin("gateway"), &registries, host_args);
        let url = gateway.url("/visit/");
        assert!(
            poll_until(SETTLE, || get(&url).status == 200),
            "{}",
            gateway.log()
        );
        System {
            replicas,
            logs,
            visit,
            gateway,
            _dir: dir,
        }
    }

    fn replica_refs(&self) -> Vec<&Proc> {
        self.replicas.iter().collect()
    }
}

fn fail_with(failures: &[harness::load::Failure], ok: usize) -> String {
    format!(
        "{} of {} requests failed, e.g. {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    )
}

#[test]
fn killing_the_leading_replica_fails_no_request_and_the_other_takes_over() {
    let etcd = EtcdCluster::start(3);
    let mut system = System::start(&etcd, &[free_addr(), free_addr()], &[]);
    assert!(poll_until(SETTLE, || leader_of(&system.replica_refs()).is_some()));
    let load = Load::start(&system.gateway.url("/visit/"), CLIENTS);
    assert!(load.wait_for_more(100, SETTLE));

    let leader = leader_of(&system.replica_refs()).unwrap();
    let other = 1 - leader;
    system.replicas[leader].kill9();
    let killed = Instant::now();
    assert!(
        poll_until(SETTLE, || leader_of(&[&system.replicas[other]]).is_some()),
        "{}",
        system.replicas[other].log()
    );
    let takeover = killed.elapsed();
    eprintln!("takeover after {takeover:?}");
    assert!(
        takeover <= TAKEOVER_BOUND,
        "the other replica led after {takeover:?}, bound {TAKEOVER_BOUND:?}"
    );

    // Evictions and notifications go on under the new leader: a log host
    // killed now leaves the table, and visit hears of it.
    let killed_log = system.logs[1].addr().to_string();
    let log_killed_at = load.elapsed();
    system.logs[1].kill9();
    let killed = Instant::now();
    let survivor = &system.replicas[other];
    assert!(
        poll_until(SETTLE, || registered(survivor, "log").len() == 1),
        "{}",
        survivor.log()
    );
    let evicted = killed.elapsed();
    assert!(
        evicted <= EVICTION_BOUND,
        "evicted after {evicted:?}, bound {EVICTION_BOUND:?}"
    );
    assert!(
        poll_until(SETTLE, || system.visit.log().contains("instance removed")),
        "{}",
        system.visit.log()
    );
    assert!(load.wait_for_more(100, SETTLE));
    let (ok, failures) = load.stop();

    // Only requests to the killed log host may fail (visit answers 500 for
    // them): those in flight when it died, and those visit had already
    // written on a kept-alive connection to it, none before its kill nor
    // long after. The registry replica's death failed none.
    eprintln!(
        "{} of {} requests failed, all sent to the killed log host",
        failures.len(),
        ok + failures.len()
    );
    for failure in &failures {
        assert!(
            failure.status == Some(500)
                && failure.text.contains(&killed_log)
                && failure.at >= log_killed_at
                && failure.at < log_killed_at + Duration::from_secs(1),
            "{}",
            fail_with(&failures, ok)
        );
    }
}

/// A leader paused past its lease resumes believing it leads, and its sweep
/// runs on before it learns otherwise, with heartbeats that fail: the hosts
/// closed its idle connections meanwhile. Its evictions are fenced by its
/// lease, so it evicts nothing.
#[test]
fn a_leader_paused_past_its_lease_evicts_nothing_when_it_resumes() {
    let etcd = EtcdCluster::start(3);
    // One failed heartbeat evicts: no second attempt on a new connection
    // comes to the rescue. Sweeps every 0.5 s keep the connections of a
    // running leader busy, so that only a pause leaves them idle for long.
    let flags = ["--heartbeat-attempts", "1", "--heartbeat-interval", "500ms"];
    let replicas: Vec<Proc> = (0..2)
        .map(|_| registry_replica(&etcd, &free_addr(), &flags))
        .collect();
    let refs: Vec<&Proc> = replicas.iter().collect();
    // Idle connections close after 1 s, so a registry paused longer finds
    // its pooled ones closed when it resumes.
    let hosts: Vec<Proc> = (0..6)
        .map(|n| {
            let name = format!("echo{n}");
            host_of(
                &stub("plain-echo"),
                &refs,
                &["--name", &name, "--header-timeout", "1s"],
            )
        })
        .collect();
    let heartbeats_ok = |replica: &Proc| {
        let metrics = get(&replica.url("/metrics")).text();
        counter(
            &metrics,
            r#"sparrow_registry_heartbeats_total{result="ok"}"#,
        )
    };
    // Each round pauses the leader of the time; a deposed leader's
    // eviction races with its learning that it lost, so one round alone
    // would not always show one.
    for round in 0..3 {
        assert!(poll_until(SETTLE, || leader_of(&refs).is_some()));
        let leader = leader_of(&refs).unwrap();
        let other = 1 - leader;
        // Past a sweep, so that the leader holds a pooled connection to
        // each host.
        let before = heartbeats_ok(&replicas[leader]);
        assert!(poll_until(SETTLE, || heartbeats_ok(&replicas[leader])
            >= before + hosts.len() as u64));
        let stepped_down = |replica: &Proc| replica.log().matches("no longer leading").count();
        let stepped_down_before = stepped_down(&replicas[leader]);
        replicas[leader].signal(Signal::SIGSTOP).unwrap();
        assert!(
            poll_until(SETTLE, || leader_of(&[&replicas[other]]).is_some()),
            "{}",
            replicas[other].log()
        );
        replicas[leader].signal(Signal::SIGCONT).unwrap();
        assert!(
            poll_until(SETTLE, || stepped_down(&replicas[leader])
                > stepped_down_before),
            "{}",
            replicas[leader].log()
        );
        // What the deposed leader did between its resumption and then.
        for (n, host) in hosts.iter().enumerate() {
            let listed = registered(&replicas[other], &format!("echo{n}"));
            assert_eq!(
                listed.len(),
                1,
                "round {round}: echo{n} at {} was evicted:\n{}",
                host.addr(),
                replicas[leader].log()
            );
        }
    }
    for replica in &replicas {
        assert!(
            !replica.log().contains("evicted after"),
            "{}",
            replica.log()
        );
    }
}

/// etcd restored empty (its data lost, or a new cluster at the same
/// addresses) counts its revisions from 1 again, below what the replicas
/// applied. They read the table again instead of keeping a copy etcd no
/// longer has; the services, no longer heartbeaten, register again by
/// themselves, and the traffic goes on from the callers' caches meanwhile.
#[test]
fn etcd_restored_empty_is_read_again_and_the_services_register_again() {
    let mut etcd = EtcdCluster::start(3);
    let system = System::start(&etcd, &[free_addr()], &["--heartbeat-timeout", "3s"]);
    let registry = &system.replicas[0];
    // Records only the old etcd holds, and revisions well past what the
    // new one reaches during the test.
    for n in 0..30 {
        let probe = format!(
            r#"{{"Name":"probe{n}","Addr":"{}","RequiredServices":[]}}"#,
            system.logs[0].addr()
        );
        let reply = send("POST", &registry.url("/services"), &[], probe.as_bytes()).unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let load = Load::start(&system.gateway.url("/visit/"), CLIENTS);
    assert!(load.wait_for_more(100, SETTLE));

    etcd.wipe();
    // The copy is etcd's again: the old records are gone...
    assert!(
        poll_until(SETTLE, || registered(registry, "probe0").is_empty()),
        "{}",
        registry.log()
    );
    // ...and every service is back, registered anew.
    let all_back = || {
        [("log", 2), ("visit", 1), ("gateway", 1)]
            .iter()
            .all(|&(name, n)| registered(registry, name).len() == n)
    };
    assert!(poll_until(SETTLE, all_back), "{}", registry.log());
    assert!(load.wait_for_more(100, SETTLE));
    let (ok, failures) = load.stop();
    assert!(failures.is_empty(), "{}", fail_with(&failures, ok));
}

/// A replica paused while etcd is restored empty may resume only once the
/// new etcd's revision has passed the one it applied: the revision alone
/// no longer tells of the loss, the table's marker key does. It reads the
/// table again instead of keeping records etcd no longer has.
#[test]
fn a_replica_away_while_etcd_was_restored_empty_reads_it_again() {
    let mut etcd = EtcdCluster::start(3);
    let replicas: Vec<Proc> = (0..2)
        .map(|_| registry_replica(&etcd, &free_addr(), &[]))
        .collect();
    let refs: Vec<&Proc> = replicas.iter().collect();
    // Heartbeats to the probes' address are answered: no sweep evicts them.
    let host = host_of(&stub("plain-echo"), &refs, &["--name", "echo"]);
    let register = |replica: &Proc, name: &str| {
        let probe = format!(
            r#"{{"Name":"{name}","Addr":"{}","RequiredServices":[]}}"#,
            host.addr()
        );
        send("POST", &replica.url("/services"), &[], probe.as_bytes())
            .is_ok_and(|reply| reply.status == 200)
    };
    for n in 0..5 {
        assert!(register(&replicas[0], &format!("old{n}")));
    }
    assert!(poll_until(SETTLE, || registered(&replicas[1], "old4")
        .len()
        == 1));

    replicas[0].signal(Signal::SIGSTOP).unwrap();
    etcd.wipe();
    // The other replica sees the loss by the revision and reads again...
    assert!(poll_until(SETTLE, || registered(&replicas[1], "old0").is_empty()));
    // ...and takes writes again, which carry the new etcd past the
    // revision the paused one applied.
    assert!(poll_until(SETTLE, || register(&replicas[1], "new0")));
    for n in 1..40 {
        assert!(register(&replicas[1], &format!("new{n}")));
    }
    replicas[0].signal(Signal::SIGCONT).unwrap();
    assert!(
        poll_until(SETTLE, || registered(&replicas[0], "old0").is_empty()
            && registered(&replicas[0], "new0").len() == 1),
        "{}",
        replicas[0].log()
    );
    assert!(
        replicas[0].log().contains("marker"),
        "{}",
        replicas[0].log()
    );
}

#[test]
fn etcd_member_losses_leave_traffic_alone_and_writes_come_back_with_quorum() {
    let mut etcd = EtcdCluster::start(3);
    let system = System::start(&etcd, &[free_addr()], &[]);
    let registry = &system.replicas[0];
    let load = Load::start(&system.gateway.url("/visit/"), CLIENTS);
    assert!(load.wait_for_more(100, SETTLE));
    // A record that heartbeats keep: it lives at a log host's address.
    let probe = |n: u32| {
        format!(
            r#"{{"Name":"probe{n}","Addr":"{}","RequiredServices":[]}}"#,
            system.logs[0].addr()
        )
    };
    let register = |n: u32| send("POST", &registry.url("/services"), &[], probe(n).as_bytes());

    // One member down: quorum holds, writes go on.
    etcd.kill9(0);
    assert!(poll_until(SETTLE, || register(1).is_ok_and(|r| r.status == 200)));
    // Every one of them: a request the replica's client sends to the dead
    // member is asked again of another.
    for n in 100..130 {
        let reply = register(n).unwrap();
        assert_eq!(reply.status, 200, "write {n}: {}", reply.text());
    }
    assert!(load.wait_for_more(200, SETTLE));

    // Two down: no quorum. Writes answer 503 with a reason; the traffic
    // goes on from the hosts' caches.
    etcd.kill9(1);
    let mut refused = None;
    assert!(poll_until(SETTLE, || {
        refused = register(2).ok().filter(|r| r.status == 503);
        refused.is_some()
    }));
    let text = refused.unwrap().text();
    assert!(
        text.contains("etcd") && text.trim_end().lines().count() == 1,
        "{text:?}"
    );
    // Reads still answer, from the replica's copy, and say it may be stale.
    assert!(poll_until(SETTLE, || {
        let reply = get(&registry.url("/services"));
        reply.status == 200 && reply.headers.contains_key("x-sparrow-stale")
    }));
    assert!(load.wait_for_more(200, SETTLE));

    // Quorum back: registrations work again, nothing restarted.
    etcd.restart(0);
    etcd.restart(1);
    assert!(
        poll_until(SETTLE, || register(3).is_ok_and(|r| r.status == 200)),
        "{}",
        registry.log()
    );
    assert!(poll_until(SETTLE, || !registered(registry, "probe3").is_empty()));
    assert!(load.wait_for_more(100, SETTLE));
    let (ok, failures) = load.stop();
    assert!(failures.is_empty(), "{}", fail_with(&failures, ok));
}

#[test]
fn restarting_every_replica_keeps_the_table_and_fails_no_request() {
    let etcd = EtcdCluster::start(3);
    let addrs = [free_addr(), free_addr()];
    // Hosts that would register again after 5 s without a heartbeat: more
    // than the new leader takes (2 s lease, 0.5 s looks, a sweep at once).
    let mut system = System::start(&etcd, &addrs, &["--heartbeat-timeout", "5s"]);
    // The table as one replica lists it; empty while it does not answer
    // (a pooled connection to the killed process fails once).
    let table = |registry: &Proc| -> BTreeMap<String, Vec<String>> {
        let Ok(reply) = send("GET", &registry.url("/services"), &[], b"") else {
            return BTreeMap::new();
        };
        ["log", "visit", "gateway"]
            .iter()
            .map(|s| {
                let mut addrs: Vec<String> = reply.json()[*s]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["Addr"].as_str().map(String::from))
                    .collect();
                addrs.sort();
                (s.to_string(), addrs)
            })
            .collect()
    };
    let before = table(&system.replicas[0]);
    let load = Load::start(&system.gateway.url("/visit/"), CLIENTS);
    assert!(load.wait_for_more(100, SETTLE));

    for replica in &mut system.replicas {
        replica.kill9();
    }
    system.replicas = addrs
        .iter()
        .map(|addr| registry_replica(&etcd, addr, &[]))
        .collect();
    let restarted = Instant::now();
    for replica in &system.replicas {
        assert!(poll_until(SETTLE, || table(replica) == before));
    }
    // Past the hosts' heartbeat timeout: the new leader's heartbeats kept
    // them from registering again.
    assert!(poll_until(SETTLE, || restarted.elapsed()
        > Duration::from_secs(6)
        && load.ok() > 0));
    assert!(load.wait_for_more(100, SETTLE));
    let (ok, failures) = load.stop();
    assert!(failures.is_empty(), "{}", fail_with(&failures, ok));
    for host in system.logs.iter().chain([&system.visit, &system.gateway]) {
        assert!(
            !host.log().contains("registering again"),
            "{}:\n{}",
            host.name(),
            host.log()
        );
    }
}

/// A dependent that records every notification: (method, Addr) in order.
struct Recorder {
    addr: String,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Recorder {
    fn start() -> Recorder {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let sink = seen.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let sink = sink.clone();
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let method = request.method().to_string();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            if let Ok(record) = serde_json::from_slice::<serde_json::Value>(&body)
                                && let Some(addr) = record["Addr"].as_str()
                            {
                                sink.lock().unwrap().push((method, addr.to_owned()));
                            }
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        Recorder {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    /// The instances whose last notification was a POST.
    fn view(&self) -> Vec<String> {
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        for (method, addr) in self.seen.lock().unwrap().iter() {
            last.insert(addr.clone(), method.clone());
        }
        last.into_iter()
            .filter(|(_, method)| method == "POST")
            .map(|(addr, _)| addr)
            .collect()
    }
}

#[test]
fn concurrent_writes_on_both_replicas_converge_everywhere() {
    const INSTANCES: usize = 6;
    const WRITERS: usize = 8;
    const ROUNDS: usize = 30;
    let etcd = EtcdCluster::start(3);
    // No heartbeats: the instances are fakes.
    let no_heartbeat = ["--heartbeat-interval", "1h"];
    let replicas = [
        registry_replica(&etcd, "127.0.0.1:0", &no_heartbeat),
        registry_replica(&etcd, "127.0.0.1:0", &no_heartbeat),
    ];
    let urls: Vec<String> = replicas.iter().map(|r| r.url("/services")).collect();
    let recorder = Recorder::start();
    let watcher = format!(
        r#"{{"Name":"watcher","Addr":"{}","RequiredServices":["flappy"]}}"#,
        recorder.addr
    );
    assert_eq!(
        send("POST", &urls[0], &[], watcher.as_bytes())
            .unwrap()
            .status,
        200
    );
    // Both replicas know the watcher before the storm starts.
    assert!(poll_until(SETTLE, || replicas.iter().all(|r| registered(
        r, "watcher"
    )
    .len()
        == 1)));
    let flappy = |i: usize| format!("127.0.0.1:{}", 41000 + i);
    let record = |i: usize| {
        format!(
            r#"{{"Name":"flappy","Addr":"{}","RequiredServices":[]}}"#,
            flappy(i)
        )
    };
    let write = |url: &str, register: bool, i: usize| {
        let method = if register { "POST" } else { "DELETE" };
        let reply = send(method, url, &[], record(i).as_bytes()).unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
    };

    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let (urls, write) = (&urls, &write);
            scope.spawn(move || {
                for round in 0..ROUNDS {
                    let url = &urls[(writer + round) % 2];
                    write(
                        url,
                        (writer + round / 2) % 2 == 0,
                        (writer + round) % INSTANCES,
                    );
                }
            });
        }
    });
    // The last write of each instance, on alternating replicas: even ones
    // registered, odd ones removed.
    for i in 0..INSTANCES {
        write(&urls[i % 2], i % 2 == 0, i);
    }
    let expected: Vec<String> = (0..INSTANCES).step_by(2).map(flappy).collect();
    for replica in &replicas {
        assert!(
            poll_until(SETTLE, || {
                let mut now = registered(replica, "flappy");
                now.sort();
                now == expected
            }),
            "{:?}",
            registered(replica, "flappy")
        );
    }
    // The dependent converges (both replicas notify it; the last word of
    // each on every instance is its final state) and stays converged.
    let mut agreed_since: Option<Instant> = None;
    assert!(
        poll_until(SETTLE, || {
            if recorder.view() == expected {
                agreed_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1)
            } else {
                agreed_since = None;
                false
            }
        }),
        "dependent's view {:?}, table {expected:?}",
        recorder.view()
    );
}

/// Registrations sent at once to two replicas, one of them killed -9 while
/// they go on: a replica makes its registrations in shared transactions,
/// and dying with one in flight must lose none it acknowledged. Every
/// registration answered 200 is in the table the other replica shows.
/// The ones sent to the killed replica from then on fail (no connection,
/// or no answer to one in flight, whose registration may or may not have
/// been made: registering again is safe); the other replica fails none.
#[test]
fn a_replica_killed_amid_shared_registrations_loses_none_it_acknowledged() {
    const WRITERS: usize = 8;
    /// The most each writer sends: they stop once enough came after the
    /// kill.
    const EACH: usize = 2000;
    const BEFORE_KILL: usize = 160;
    const AFTER_KILL: usize = 320;
    let etcd = EtcdCluster::start(1);
    let no_heartbeat = ["--heartbeat-interval", "1h"];
    let mut replicas = [
        registry_replica(&etcd, "127.0.0.1:0", &no_heartbeat),
        registry_replica(&etcd, "127.0.0.1:0", &no_heartbeat),
    ];
    let urls: Vec<String> = replicas.iter().map(|r| r.url("/services")).collect();
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let count = || answered.load(std::sync::atomic::Ordering::SeqCst);
    let record = |writer: usize, n: usize| {
        let addr = format!("127.0.0.1:{}", 30000 + writer * EACH + n);
        let json = format!(r#"{{"Name":"many","Addr":"{addr}","RequiredServices":[]}}"#);
        (addr, json)
    };
    let outcomes: Vec<Vec<(usize, String, Option<u16>)>> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (urls, answered, stop) = (&urls, &answered, &stop);
                scope.spawn(move || {
                    (0..EACH)
                        .take_while(|_| !stop.load(std::sync::atomic::Ordering::SeqCst))
                        .map(|n| {
                            let replica = writer % 2;
                            let (addr, json) = record(writer, n);
                            let status = send("POST", &urls[replica], &[], json.as_bytes())
                                .ok()
                                .map(|reply| reply.status);
                            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            (replica, addr, status)
                        })
                        .collect()
                })
            })
            .collect();
        // Killed amid the registrations, which go on after it.
        assert!(poll_until(SETTLE, || count() >= BEFORE_KILL));
        replicas[0].kill9();
        let killed = count();
        assert!(poll_until(SETTLE, || count() >= killed + AFTER_KILL));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let outcomes: Vec<_> = outcomes.into_iter().flatten().collect();
    let acknowledged: Vec<&String> = outcomes
        .iter()
        .filter(|(_, _, status)| *status == Some(200))
        .map(|(_, addr, _)| addr)
        .collect();
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, _, status)| *status != Some(200))
        .collect();
    // The survivor failed none; the killed one failed those sent after it
    // died, and at most one batch in flight.
    assert!(
        failed
            .iter()
            .all(|(replica, _, status)| *replica == 0 && status.is_none_or(|s| s == 503)),
        "{failed:?}"
    );
    assert!(!failed.is_empty(), "nothing was sent to the killed replica");
    let survivor = &replicas[1];
    assert!(
        poll_until(SETTLE, || {
            let listed = registered(survivor, "many");
            acknowledged.iter().all(|addr| listed.contains(addr))
        }),
        "{} acknowledged, {} listed",
        acknowledged.len(),
        registered(survivor, "many").len()
    );
    eprintln!(
        "{} registrations: {} acknowledged, {} failed at the killed replica",
        outcomes.len(),
        acknowledged.len(),
        failed.len()
    );
}

/// A replica cut off with one etcd member, the majority going on without
/// them: its copy misses what the majority registers from then on, and for
/// the seconds until its member notices, nothing marks its answers stale.
/// A host asks `?consistent` before it drops an instance that failed a
/// call: such a replica must answer that it cannot tell (503), never a
/// list without the new instance; the other replica, and this one once
/// its member is back, answer with it.
#[test]
fn a_replica_cut_off_with_a_minority_does_not_pass_off_its_copy_as_the_truth() {
    let etcd = EtcdCluster::start(3);
    let cut_off = registry_replica_on(etcd.member_url(0), &free_addr(), &["--etcd-timeout", "1s"]);
    let majority = format!("{},{}", etcd.member_url(1), etcd.member_url(2));
    let other = registry_replica_on(&majority, &free_addr(), &[]);
    let register = |name: &str, addr: &str| {
        let record = format!(r#"{{"Name":"{name}","Addr":"{addr}","RequiredServices":[]}}"#);
        send("POST", &other.url("/services"), &[], record.as_bytes())
            .is_ok_and(|reply| reply.status == 200)
    };
    let consistent = |replica: &Proc, name: &str| {
        send(
            "GET",
            &replica.url(&format!("/services/{name}?consistent")),
            &[],
            b"",
        )
        .unwrap()
    };
    // Instances that answer heartbeats: whichever replica leads sweeps.
    let instances = [Recorder::start(), Recorder::start(), Recorder::start()];
    let [before, second, after] = instances.each_ref().map(|r| r.addr.clone());
    // Listed in the order they first registered, as the copies list them.
    for addr in [&before, &second, &before] {
        assert!(register("before", addr));
    }
    let order = [before.clone(), second.clone()];
    assert!(poll_until(SETTLE, || registered(&cut_off, "before") == order));
    let addrs = |reply: harness::Reply| -> Vec<String> {
        let listed = reply.json();
        let listed = listed.as_array().unwrap().iter();
        listed
            .map(|i| i["Addr"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(addrs(consistent(&other, "before")), order);
    assert_eq!(addrs(consistent(&cut_off, "before")), order);

    etcd.signal(0, Signal::SIGSTOP);
    // The majority elects a leader of its own if it must.
    assert!(poll_until(SETTLE, || register("after", &after)));
    for name in ["after", "before"] {
        let asked = consistent(&cut_off, name);
        assert_eq!(
            asked.status,
            503,
            "{name}: the cut-off replica answered from its copy: {}",
            asked.text()
        );
    }
    let asked = consistent(&other, "after");
    assert_eq!(asked.status, 200, "{}\n{}", asked.text(), other.log());
    assert_eq!(asked.json()[0]["Addr"].as_str(), Some(after.as_str()));

    etcd.signal(0, Signal::SIGCONT);
    assert!(
        poll_until(SETTLE, || {
            let asked = consistent(&cut_off, "after");
            asked.status == 200 && asked.json()[0]["Addr"].as_str() == Some(after.as_str())
        }),
        "{}",
        cut_off.log()
    );
}

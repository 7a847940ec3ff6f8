//! Hot swap: replacing the plugin file while the host serves, and the
//! compiled-plugin cache that makes restarts fast.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use harness::{Proc, Signal, TempDir, get, install_atomically, poll_until, send, stub};

const SWAP_TIMEOUT: Duration = Duration::from_secs(30);

/// A host serving a copy of the echo stub that the test may replace.
struct Swappable {
    dir: TempDir,
    plugin: PathBuf,
    registry: Proc,
    host: Proc,
}

fn swappable(extra: &[&str]) -> Swappable {
    let dir = TempDir::new("swap");
    let plugin = dir.path().join("plugin.wasm");
    std::fs::copy(stub("echo"), &plugin).unwrap();
    let cache = dir.path().join("cache");
    let registry = Proc::registry(&[]);
    let mut args = vec!["--cache-dir", cache.to_str().unwrap()];
    args.extend_from_slice(extra);
    let host = Proc::host(&plugin, &registry, &args);
    Swappable {
        dir,
        plugin,
        registry,
        host,
    }
}

fn version(host: &Proc) -> String {
    get(&host.url("/version")).text()
}

fn wait_for_version(host: &Proc, expected: &str) {
    assert!(
        poll_until(SWAP_TIMEOUT, || version(host) == expected),
        "never served {expected}:\n{}",
        host.log()
    );
}

#[test]
fn a_replaced_file_is_served_by_its_new_version() {
    let s = swappable(&[]);
    assert_eq!(version(&s.host), "v1");

    install_atomically(&stub("echo-v2"), &s.plugin);
    wait_for_version(&s.host, "v2");

    // A plain copy over the file works too, once it is written.
    std::fs::copy(stub("echo"), &s.plugin).unwrap();
    wait_for_version(&s.host, "v1");
    assert!(s.host.log().contains("plugin swapped"), "{}", s.host.log());
}

#[test]
fn sighup_reloads_on_demand() {
    let s = swappable(&[]);
    s.host.signal(Signal::SIGHUP).unwrap();
    assert!(
        s.host.wait_for_log("plugin unchanged", SWAP_TIMEOUT),
        "{}",
        s.host.log()
    );
    assert_eq!(version(&s.host), "v1");

    // A change the file watch cannot see (same inode, size and time): only
    // SIGHUP brings it in.
    let v2 = std::fs::read(stub("echo-v2")).unwrap();
    let before = std::fs::metadata(&s.plugin).unwrap();
    assert_eq!(before.len(), v2.len() as u64, "the stubs differ in size");
    let file = std::fs::File::options()
        .write(true)
        .open(&s.plugin)
        .unwrap();
    std::io::Write::write_all(&mut &file, &v2).unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    drop(file);
    assert_eq!(version(&s.host), "v1");
    s.host.signal(Signal::SIGHUP).unwrap();
    wait_for_version(&s.host, "v2");
    assert!(s.host.log().contains("why=\"SIGHUP\""), "{}", s.host.log());
}

#[test]
fn a_bad_new_file_is_refused_and_the_old_version_keeps_serving() {
    let s = swappable(&[]);
    let bad = s.dir.path().join("bad.wasm");
    let v2 = std::fs::read(stub("echo-v2")).unwrap();
    let cases: [(&[u8], &str); 3] = [
        (b"not wasm at all", "not a WebAssembly file"),
        (&v2[..v2.len() / 2], "does not compile"),
        (
            &std::fs::read(stub("other-world")).unwrap(),
            "is not a component of the",
        ),
    ];
    for (n, (contents, reason)) in cases.iter().enumerate() {
        std::fs::write(&bad, contents).unwrap();
        install_atomically(&bad, &s.plugin);
        assert!(
            poll_until(SWAP_TIMEOUT, || refusals(&s.host, reason) > 0),
            "case {n}: no refusal saying '{reason}':\n{}",
            s.host.log()
        );
        assert_eq!(version(&s.host), "v1");
    }

    // Once the file is whole, it is taken.
    install_atomically(&stub("echo-v2"), &s.plugin);
    wait_for_version(&s.host, "v2");
}

fn refusals(host: &Proc, reason: &str) -> usize {
    host.log()
        .lines()
        .filter(|line| line.contains("new plugin refused") && line.contains(reason))
        .count()
}

#[test]
fn host_kept_state_survives_a_swap() {
    let s = swappable(&[]);
    assert_eq!(get(&s.host.url("/count")).text(), "1");
    assert_eq!(get(&s.host.url("/count")).text(), "2");
    install_atomically(&stub("echo-v2"), &s.plugin);
    wait_for_version(&s.host, "v2");
    assert_eq!(get(&s.host.url("/count")).text(), "3");
}

#[test]
fn a_new_description_is_registered_anew() {
    let s = swappable(&[]);
    let requires = |s: &Swappable| -> Vec<serde_json::Value> {
        let services = get(&s.registry.url("/services")).json();
        services["echo"][0]["RequiredServices"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert!(requires(&s).is_empty());
    install_atomically(&stub("echo-calls-echo"), &s.plugin);
    assert!(
        poll_until(SWAP_TIMEOUT, || requires(&s)
            == vec![serde_json::json!("echo")]),
        "{}",
        s.host.log()
    );
}

/// One answered request of the load test.
struct Sample {
    sent: Instant,
    answered: Instant,
    status: u16,
    body: String,
}

/// One swap: when the new file was put in place, when its first answer came,
/// and what it answers.
struct Swap {
    installed: Instant,
    served: Instant,
    version: &'static str,
}

#[test]
fn twenty_swaps_under_load_lose_no_request() {
    const CLIENTS: usize = 8;
    const LOAD: Duration = Duration::from_secs(5);
    const SWAPS: usize = 20;
    const GRACE: Duration = Duration::from_millis(100);

    let s = swappable(&[]);
    // Compile both versions once, so that every swap below hits the cache.
    install_atomically(&stub("echo-v2"), &s.plugin);
    wait_for_version(&s.host, "v2");
    install_atomically(&stub("echo"), &s.plugin);
    wait_for_version(&s.host, "v1");

    let running = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = s.host.url("/version");
            let running = running.clone();
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                while running.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let (status, body) = match send("GET", &url, &[], b"") {
                        Ok(reply) => (reply.status, reply.text()),
                        Err(e) => (0, format!("{e:#}")),
                    };
                    samples.push(Sample {
                        sent,
                        answered: Instant::now(),
                        status,
                        body,
                    });
                }
                samples
            })
        })
        .collect();

    let started = Instant::now();
    let pace = LOAD / (SWAPS as u32 + 1);
    let mut swaps = Vec::new();
    for n in 0..SWAPS {
        let (file, version) = if n % 2 == 0 {
            (stub("echo-v2"), "v2")
        } else {
            (stub("echo"), "v1")
        };
        // Pace the swaps over the load period.
        let due = started + pace * (n as u32 + 1);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let installed = Instant::now();
        install_atomically(&file, &s.plugin);
        assert!(
            poll_until(SWAP_TIMEOUT, || send(
                "GET",
                &s.host.url("/version"),
                &[],
                b""
            )
            .is_ok_and(|r| r.text() == version)),
            "swap {n} to {version} never served:\n{}",
            s.host.log()
        );
        swaps.push(Swap {
            installed,
            served: Instant::now(),
            version,
        });
    }
    // Keep the load on for its whole period.
    std::thread::sleep((started + LOAD).saturating_duration_since(Instant::now()));
    running.store(false, Ordering::Relaxed);
    let samples: Vec<Sample> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();

    let failed: Vec<_> = samples.iter().filter(|s| s.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {}",
        failed.len(),
        samples.len(),
        failed[0].body
    );
    assert!(
        samples.len() > 100,
        "too little load: {} requests",
        samples.len()
    );

    // Between a swap's first answer (plus grace) and the next replacement,
    // every request is served by the new version.
    for (n, swap) in swaps.iter().enumerate() {
        let until = swaps
            .get(n + 1)
            .map_or(Instant::now(), |next| next.installed);
        for sample in &samples {
            if sample.sent >= swap.served + GRACE && sample.answered <= until {
                assert_eq!(sample.body, swap.version, "after swap {n}");
            }
        }
    }
    let slowest = swaps.iter().map(|s| s.served - s.installed).max().unwrap();
    eprintln!(
        "{} requests, {SWAPS} swaps, slowest swap {slowest:?}",
        samples.len()
    );
}

#[test]
fn a_restarted_host_takes_the_compiled_plugin_from_the_cache() {
    let s = swappable(&[]);
    let cache = s.dir.path().join("cache");
    let entries = |dir: &Path| {
        std::fs::read_dir(dir).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
                .count()
        })
    };
    assert_eq!(
        entries(&cache),
        1,
        "one compiled entry after the first start"
    );
    assert!(!s.host.log().contains("taken from the cache"));

    let again = Proc::host(
        &s.plugin,
        &s.registry,
        &["--cache-dir", cache.to_str().unwrap()],
    );
    assert!(
        again.log().contains("compiled plugin taken from the cache"),
        "{}",
        again.log()
    );
    assert_eq!(version(&again), "v1");
}

#[test]
fn a_version_that_never_describes_itself_is_refused_at_the_request_timeout() {
    let s = swappable(&["--request-timeout", "1s"]);
    install_atomically(&stub("echo-sleeps-describing"), &s.plugin);
    assert!(
        poll_until(SWAP_TIMEOUT, || refusals(
            &s.host,
            "failed to describe itself"
        ) > 0),
        "{}",
        s.host.log()
    );
    assert_eq!(version(&s.host), "v1");
}

#[test]
fn a_stop_during_a_swap_that_hangs_ends_the_host_at_once() {
    let mut s = swappable(&["--request-timeout", "1h"]);
    install_atomically(&stub("echo-sleeps-describing"), &s.plugin);
    assert!(
        s.host.wait_for_log("loading the plugin file", SWAP_TIMEOUT),
        "{}",
        s.host.log()
    );
    // The hour-long describe must not hold the stop: the bound is far below
    // it, a correctness bound rather than a measure of speed.
    let status = s.host.terminate(Duration::from_secs(30));
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "{status:?}:\n{}",
        s.host.log()
    );
}

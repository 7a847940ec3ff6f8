//! A real etcd cluster on loopback for the tests of the registry on etcd:
//! three members (by default) on free ports, each a process the test can
//! kill -9, stop and start again on the same data.
//!
//! The `etcd` binary (3.4 or later) is taken from `SPARROW_ETCD`, or else
//! from `PATH`; `cargo xtask test` installs it when it is missing (see
//! `xtask/src/etcd.rs`). Data directories live in `/dev/shm` when there is
//! one: etcd syncs every write, and a shared disk makes that slow.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{poll_until, send};

/// How long a cluster may take to elect a leader, on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The etcd binary to run: `SPARROW_ETCD`, or else `etcd` on `PATH`.
pub fn find_etcd() -> Option<PathBuf> {
    match std::env::var_os("SPARROW_ETCD") {
        Some(path) => Some(PathBuf::from(path)),
        None => crate::on_path("etcd"),
    }
}

/// The etcd binary the tests run.
pub fn etcd_binary() -> PathBuf {
    find_etcd().unwrap_or_else(|| {
        panic!(
            "etcd is not installed: run the tests with `cargo xtask test`, which installs it, \
             or set SPARROW_ETCD to an etcd 3.4+ binary"
        )
    })
}

/// One member: its ports, its data, and its process while it runs.
struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

/// A running cluster, killed (and its data removed) when dropped.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    root: PathBuf,
    /// More flags for every member.
    extra: Vec<String>,
}

/// A loopback URL nobody listens on right now.
fn free_url() -> String {
    format!(
        "http://{}",
        crate::free_addr().expect("a free loopback port")
    )
}

impl EtcdCluster {
    /// Starts `size` members and waits until every one answers healthy.
    pub fn start(size: usize) -> EtcdCluster {
        Self::start_with(size, &[])
    }

    /// [`EtcdCluster::start`], each member given the flags `extra` too.
    pub fn start_with(size: usize, extra: &[&str]) -> EtcdCluster {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let token = format!("sparrow-test-{}-{n}", std::process::id());
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let root = base.join(&token);
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("creating etcd's data directory");
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_url: free_url(),
                peer_url: free_url(),
                data_dir: root.join(format!("m{i}")),
                child: None,
                log: Arc::default(),
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            initial_cluster,
            token,
            root,
            extra: extra.iter().map(|flag| flag.to_string()).collect(),
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            assert!(
                cluster.wait_healthy(i, START_TIMEOUT),
                "etcd member {i} did not become healthy:\n{}",
                cluster.log(i)
            );
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let binary = etcd_binary();
        let member = &mut self.members[i];
        let mut child = Command::new(&binary)
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &member.client_url])
            .args(["--advertise-client-urls", &member.client_url])
            .args(["--listen-peer-urls", &member.peer_url])
            .args(["--initial-advertise-peer-urls", &member.peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            // Quicker elections than the defaults (100 ms / 1 s), so that
            // losing the etcd leader costs the tests less time.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&member.log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        member.child = Some(child);
    }

    /// Every member's client URL, comma-separated: what `registry --etcd`
    /// takes.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Member `i`'s client URL alone: a replica that reaches only this
    /// member, as one cut off with it would.
    pub fn member_url(&self, i: usize) -> &str {
        &self.members[i].client_url
    }

    /// Sends `signal` to member `i` (`SIGSTOP` freezes it: to its peers and
    /// clients it is cut off, connections open but silent; `SIGCONT`).
    pub fn signal(&self, i: usize, signal: crate::Signal) {
        if let Some(child) = &self.members[i].child {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, signal).expect("signalling an etcd member");
        }
    }

    /// Whether member `i` answers `/health` with `true` (it has a leader).
    pub fn healthy(&self, i: usize) -> bool {
        let url = format!("{}/health", self.members[i].client_url);
        send("GET", &url, &[], b"")
            .is_ok_and(|reply| reply.status == 200 && reply.text().contains("true"))
    }

    pub fn wait_healthy(&self, i: usize, timeout: Duration) -> bool {
        poll_until(timeout, || self.healthy(i))
    }

    /// kill -9 member `i`: no goodbye to its peers.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again, on the data it had.
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.spawn(i);
    }

    /// Kills every member, deletes their data and starts them again: etcd
    /// at the same addresses, empty, its revisions counting from 1 again.
    pub fn wipe(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
            let _ = std::fs::remove_dir_all(&self.members[i].data_dir);
        }
        for i in 0..self.members.len() {
            self.spawn(i);
        }
        for i in 0..self.members.len() {
            assert!(
                self.wait_healthy(i, START_TIMEOUT),
                "etcd member {i} did not become healthy:\n{}",
                self.log(i)
            );
        }
    }

    pub fn log(&self, i: usize) -> String {
        self.members[i].log.lock().unwrap().clone()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
            if std::thread::panicking() {
                eprintln!("----- log of etcd member {i} -----\n{}", self.log(i));
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Starts a registry replica on `addr` that keeps its table in `etcd`, with
/// the harness's fast heartbeats and a 2 s leader lease (`extra` may
/// override either), and waits until it takes writes.
pub fn registry_replica(etcd: &EtcdCluster, addr: &str, extra: &[&str]) -> crate::Proc {
    registry_replica_on(&etcd.endpoints(), addr, extra)
}

/// [`registry_replica`], reaching only the etcd members of `endpoints`
/// (client URLs, comma-separated).
pub fn registry_replica_on(endpoints: &str, addr: &str, extra: &[&str]) -> crate::Proc {
    let mut args = vec!["--etcd", endpoints];
    if !extra.contains(&"--leader-ttl") {
        args.extend(["--leader-ttl", "2s"]);
    }
    args.extend_from_slice(extra);
    let replica = crate::Proc::registry_at(addr, &args);
    // It takes writes once it follows etcd (503 before).
    assert!(
        replica.wait_for_log("watching etcd", START_TIMEOUT),
        "the replica never watched etcd:\n{}",
        replica.log()
    );
    replica
}

/// Starts a host for `plugin` on a free port that knows every registry of
/// `registries` (`--registry URL,URL`).
pub fn host_of(plugin: &Path, registries: &[&crate::Proc], extra: &[&str]) -> crate::Proc {
    let urls = registries
        .iter()
        .map(|r| r.url(""))
        .collect::<Vec<_>>()
        .join(",");
    let mut args = vec![
        "--plugin",
        plugin.to_str().unwrap(),
        "--addr",
        "127.0.0.1:0",
        "--registry",
        &urls,
    ];
    args.extend_from_slice(extra);
    let name = plugin.file_stem().unwrap().to_string_lossy().into_owned();
    crate::Launch::new(name, crate::binary("host"))
        .args(&args)
        .start()
        .unwrap_or_else(|e| panic!("host did not start: {e:#}"))
}

/// The replica of `replicas` that leads now (it logged that it leads and
/// not that it stopped), if one does.
pub fn leader_of(replicas: &[&crate::Proc]) -> Option<usize> {
    replicas.iter().position(|r| {
        let log = r.log();
        let leading = log.rfind("leading: running");
        let stopped = log.rfind("no longer leading");
        leading.is_some() && leading > stopped
    })
}

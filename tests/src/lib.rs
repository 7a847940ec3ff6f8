//! The test harness: start real `registry` and `host` processes on free
//! loopback ports, talk HTTP to them, and stop them.
//!
//! The binaries, plugins and stub plugins are built by `cargo xtask test`
//! before the tests run; a missing one fails the test with a message that
//! says so.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub mod etcd;
pub mod load;

/// How long a process may take to start listening, on a loaded machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The directory cargo put the test binaries' siblings in (`target/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/debug/deps/system-1234 -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/PROFILE/deps")
        .to_owned()
}

fn must_exist(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds it",
        path.display()
    );
    path
}

/// A native binary of the workspace (`registry`, `host`).
pub fn binary(name: &str) -> PathBuf {
    must_exist(profile_dir().join(name))
}

/// A plugin of the system (`plugins/NAME.wasm`).
pub fn plugin(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    must_exist(root.join("plugins").join(format!("{name}.wasm")))
}

/// A test stub plugin (`target/stubs/NAME.wasm`).
pub fn stub(name: &str) -> PathBuf {
    let target = profile_dir().parent().unwrap().to_owned();
    must_exist(target.join("stubs").join(format!("{name}.wasm")))
}

/// A fresh directory under the target directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = profile_dir()
            .join("test-tmp")
            .join(format!("{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running process whose log (stderr) is collected, stopped when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    log: Arc<Mutex<String>>,
    addr: Option<SocketAddr>,
}

impl Proc {
    /// Starts `program` and, unless it exits first, waits until it logs the
    /// address it listens on.
    pub fn start(name: &str, program: &Path, args: &[&str]) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut proc = Proc {
            name: name.to_owned(),
            child,
            log,
            addr: None,
        };
        proc.addr = proc.wait_for_listening();
        proc
    }

    /// Starts a registry on a free port with fast heartbeats.
    pub fn registry(extra: &[&str]) -> Proc {
        Proc::registry_at("127.0.0.1:0", extra)
    }

    /// Starts a registry on `addr` with fast heartbeats (`extra` may slow
    /// them down).
    pub fn registry_at(addr: &str, extra: &[&str]) -> Proc {
        const FAST: [(&str, &str); 3] = [
            ("--heartbeat-interval", "1s"),
            ("--heartbeat-attempts", "2"),
            ("--heartbeat-retry-delay", "200ms"),
        ];
        let mut args = vec!["--addr", addr];
        for (flag, value) in FAST {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend_from_slice(extra);
        let proc = Proc::start("registry", &binary("registry"), &args);
        assert!(
            proc.addr.is_some(),
            "registry did not start:\n{}",
            proc.log()
        );
        proc
    }

    /// Starts a host for `plugin` on a free port, registered with `registry`.
    pub fn host(plugin: &Path, registry: &Proc, extra: &[&str]) -> Proc {
        let registry_url = registry.url("");
        let mut args = vec![
            "--plugin",
            plugin.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
            "--registry",
            &registry_url,
        ];
        args.extend_from_slice(extra);
        let name = plugin.file_stem().unwrap().to_string_lossy().into_owned();
        let proc = Proc::start(&name, &binary("host"), &args);
        assert!(proc.addr.is_some(), "host did not start:\n{}", proc.log());
        proc
    }

    fn wait_for_listening(&mut self) -> Option<SocketAddr> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(addr) = protocol::listening::parse(&self.log()) {
                return Some(addr);
            }
            if self.child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it logged the address it listens on.
    pub fn is_listening(&self) -> bool {
        self.addr.is_some()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("the process is listening")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Polls until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        poll_until(timeout, || self.log().contains(needle))
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for a child") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("sending a signal");
    }

    /// SIGTERM, then the exit status (None if it did not exit in `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        self.wait_exit(timeout)
    }

    /// kill -9: no chance to deregister.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("----- log of {} -----\n{}", self.name, self.log());
        }
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn poll_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

thread_local! {
    /// Each test thread gets one runtime and one pooled client, so that a
    /// load test's requests reuse connections like a real client would.
    static CLIENT: (tokio::runtime::Runtime, Client<HttpConnector, Full<Bytes>>) = (
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the test client"),
        Client::builder(TokioExecutor::new()).build_http(),
    );
}

/// A blocking HTTP request, so that tests read as plain sequences of steps.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, String> {
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?)
        .uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| e.to_string())?;
    CLIENT.with(|(runtime, client)| {
        runtime.block_on(async {
            let response = tokio::time::timeout(Duration::from_secs(60), client.request(request))
                .await
                .map_err(|_| format!("{method} {url}: no answer within 60 s"))?
                .map_err(|e| format!("{method} {url}: {e}"))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("{method} {url}: {e}"))?
                .to_bytes();
            Ok(Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        })
    })
}

pub fn get(url: &str) -> Reply {
    send("GET", url, &[], b"").unwrap_or_else(|e| panic!("{e}"))
}

pub fn post(url: &str, body: &[u8]) -> Reply {
    send("POST", url, &[], body).unwrap_or_else(|e| panic!("{e}"))
}

/// The addresses the registry lists for `service` (`GET /services/{name}`).
pub fn registered(registry: &Proc, service: &str) -> Vec<String> {
    let reply = send("GET", &registry.url("/services"), &[], b"").expect("registry answers");
    let json = reply.json();
    json.get(service)
        .and_then(|v| v.as_array())
        .map(|instances| {
            instances
                .iter()
                .filter_map(|i| i.get("Addr").and_then(|a| a.as_str()).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The resident memory of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // The kernel reports in clock ticks, 100 per second on Linux.
    Duration::from_millis(ticks * 10)
}

/// Replaces `target` with a copy of `source` the way deployment tools do:
/// write a temporary file beside it, then rename it into place.
pub fn install_atomically(source: &Path, target: &Path) {
    let temporary = target.with_extension("tmp");
    std::fs::copy(source, &temporary).expect("copying the new version");
    std::fs::rename(&temporary, target).expect("renaming it into place");
}

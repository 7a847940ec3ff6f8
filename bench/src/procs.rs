//! Processes: starting `registry`, `host` and the baseline server as
//! children on loopback, reading the `listening on ADDR` line they log,
//! their resident memory, temporary directories, and the open-file limit.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::Settings;

/// How long a process may take to start listening (a cold compile included).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines kept for error messages.
const KEPT_LINES: usize = 200;
/// Log lines containing this are kept with the time they were read: the
/// registry's debug line at the start of each heartbeat sweep.
pub const SWEEP_MARK: &str = "heartbeat sweep";

#[derive(Default)]
struct Log {
    tail: VecDeque<String>,
    addr: Option<SocketAddr>,
    marks: Vec<(Instant, String)>,
}

/// A child process whose stderr is read by a thread; killed when dropped.
pub struct Proc {
    name: String,
    child: Child,
    log: Arc<Mutex<Log>>,
}

impl Proc {
    /// Starts `program` without waiting for it to listen.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        rust_log: &str,
    ) -> anyhow::Result<Proc> {
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let log = Arc::new(Mutex::new(Log::default()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                if log.addr.is_none() {
                    log.addr = protocol::listening::parse(&line);
                }
                if line.contains(SWEEP_MARK) {
                    log.marks.push((Instant::now(), line.clone()));
                }
                if log.tail.len() == KEPT_LINES {
                    log.tail.pop_front();
                }
                log.tail.push_back(line);
            }
        });
        Ok(Proc {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Starts `program` and waits until it logs the address it listens on.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[&str],
        rust_log: &str,
    ) -> anyhow::Result<Proc> {
        let mut proc = Proc::spawn(name, program, args, rust_log)?;
        proc.wait_listening()?;
        Ok(proc)
    }

    /// A registry on a free port; `extra` arguments are appended.
    pub fn registry(settings: &Settings, extra: &[&str]) -> anyhow::Result<Proc> {
        let mut args = vec!["--addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Proc::start(
            "registry",
            &binary(settings, "registry")?,
            &args,
            "info,registry::heartbeat=debug",
        )
    }

    /// The arguments of a host for `plugin` on `addr`, registered with `registry`.
    pub fn host_args(plugin: &Path, addr: &str, registry: &Proc) -> Vec<String> {
        vec![
            "--plugin".into(),
            plugin.display().to_string(),
            "--addr".into(),
            addr.into(),
            "--registry".into(),
            registry.url(""),
        ]
    }

    /// A host for `plugin` on a free port; `extra` arguments are appended.
    pub fn host(
        settings: &Settings,
        plugin: &Path,
        registry: &Proc,
        extra: &[&str],
    ) -> anyhow::Result<Proc> {
        let mut args = Proc::host_args(plugin, "127.0.0.1:0", registry);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let name = plugin.file_stem().unwrap_or_default().to_string_lossy();
        Proc::start(&name, &binary(settings, "host")?, &args, "info")
    }

    /// Waits for the `listening on ADDR` line.
    pub fn wait_listening(&mut self) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(addr) = self.log.lock().unwrap().addr {
                return Ok(addr);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}):\n{}", self.name, self.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not start listening:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.log.lock().unwrap().addr.expect("the process listens")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the process logged.
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// The lines containing [`SWEEP_MARK`], with the time each was read.
    pub fn marks(&self) -> Vec<(Instant, String)> {
        self.log.lock().unwrap().marks.clone()
    }

    /// CPU time (user + system) used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time_of(self.pid())
    }

    /// Resident memory.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_of(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) process `pid` used so far, from `/proc/PID/stat`.
pub fn cpu_time_of(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses.
    let after = stat.rfind(')').context("malformed /proc/PID/stat")? + 2;
    let fields: Vec<&str> = stat[after..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// Resident memory of process `pid`, from `/proc/PID/status`.
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    Ok(kib * 1024)
}

/// A native binary in `--bin-dir`.
pub fn binary(settings: &Settings, name: &str) -> anyhow::Result<PathBuf> {
    existing(settings.bin_dir.join(name))
}

/// A plugin in `--plugins-dir`.
pub fn plugin(settings: &Settings, name: &str) -> anyhow::Result<PathBuf> {
    existing(settings.plugins_dir.join(format!("{name}.wasm")))
}

/// A stub plugin in `--stubs-dir`.
pub fn stub(settings: &Settings, name: &str) -> anyhow::Result<PathBuf> {
    existing(settings.stubs_dir.join(format!("{name}.wasm")))
}

fn existing(path: PathBuf) -> anyhow::Result<PathBuf> {
    if !path.exists() {
        bail!(
            "{} is missing: run `cargo xtask build --release` first",
            path.display()
        );
    }
    // Absolute, so that children started elsewhere find it too.
    Ok(std::fs::canonicalize(&path)?)
}

/// A free loopback port, to name an address before a process binds it.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A fresh directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> anyhow::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("sparrow-bench-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Raises the soft open-file limit to the hard one: the registry case keeps
/// one listener per fake instance. Children inherit the raised limit.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The soft open-file limit now in force.
pub fn fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

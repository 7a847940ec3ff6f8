//! A child process of the harness: started with [`Launch`], its stderr read
//! by a thread into a log, where the `listening on ADDR` line tells which
//! port it bound; killed when dropped, so that a failed test or benchmark
//! leaves nothing running.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::listening;
use crate::usage;
use crate::wait::Deadline;

/// How long a process may take to start listening: a host compiling a
/// plugin that embeds a language runtime takes seconds on a busy machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines kept per process; the oldest go first, so that a process logging
/// through a whole benchmark run cannot fill the memory.
const KEPT_LINES: usize = 100_000;

/// Lines of the log quoted in an error.
const QUOTED_LINES: usize = 200;

/// How often an exit is looked for: the kernel tells nobody who does not
/// wait, and a blocking wait could not give up at a deadline.
const EXIT_POLL: Duration = Duration::from_millis(10);

type Watcher = Box<dyn Fn(&str) + Send>;

/// What to start: a program, its arguments and its log filter.
pub struct Launch {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    rust_log: String,
    env: Vec<(OsString, OsString)>,
    watcher: Option<Watcher>,
}

impl Launch {
    /// `program`, called `name` in errors and logs, logging at `info`.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Launch {
        Launch {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            rust_log: "info".into(),
            env: Vec::new(),
            watcher: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Launch {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// The `RUST_LOG` filter of the process (`info` unless set).
    pub fn rust_log(mut self, filter: impl Into<String>) -> Launch {
        self.rust_log = filter.into();
        self
    }

    /// Sets an environment variable of the process.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Calls `watcher` with every line the process logs, as soon as it is
    /// read: for what must be noted when it happens (the time of a line)
    /// rather than found in the log later.
    pub fn watch(mut self, watcher: impl Fn(&str) + Send + 'static) -> Launch {
        self.watcher = Some(Box::new(watcher));
        self
    }

    /// Starts the process without waiting for anything.
    pub fn spawn(self) -> anyhow::Result<Proc> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env("RUST_LOG", &self.rust_log)
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let output = Arc::new(Output::default());
        let sink = Arc::clone(&output);
        std::thread::spawn(move || sink.read(stderr, self.watcher));
        Ok(Proc {
            name: self.name,
            child,
            output,
        })
    }

    /// Starts the process and waits until it logs the address it listens
    /// on; an error, with its log, when it exits first or takes longer than
    /// [`START_TIMEOUT`].
    pub fn start(self) -> anyhow::Result<Proc> {
        let mut proc = self.spawn()?;
        proc.wait_listening(START_TIMEOUT)?;
        Ok(proc)
    }
}

/// The log of a process, shared by its reader thread and its [`Proc`].
#[derive(Default)]
struct Output {
    log: Mutex<Log>,
    /// Notified on every line read, and when the process closes stderr.
    changed: Condvar,
}

#[derive(Default)]
struct Log {
    lines: VecDeque<String>,
    addr: Option<SocketAddr>,
    /// The process closed stderr: it has exited, or is about to.
    closed: bool,
}

impl Log {
    fn tail(&self, count: usize) -> String {
        let skip = self.lines.len().saturating_sub(count);
        let mut text = String::new();
        for line in self.lines.iter().skip(skip) {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

impl Output {
    fn read(&self, stderr: ChildStderr, watcher: Option<Watcher>) {
        // To the end, whatever the bytes: a reader that stopped early would
        // leave the process blocked on a full pipe.
        for line in BufReader::new(stderr).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(watch) = &watcher {
                watch(&line);
            }
            let mut log = self.lock();
            if log.addr.is_none() {
                log.addr = listening::parse(&line);
            }
            if log.lines.len() == KEPT_LINES {
                log.lines.pop_front();
            }
            log.lines.push_back(line);
            drop(log);
            self.changed.notify_all();
        }
        self.lock().closed = true;
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        // A panic elsewhere must not hide the log of the process.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `done` holds for the log, or `timeout` passes.
    fn wait(&self, timeout: Duration, done: impl Fn(&Log) -> bool) -> MutexGuard<'_, Log> {
        self.changed
            .wait_timeout_while(self.lock(), timeout, |log| !done(log))
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}

/// A running child process; killed (SIGKILL) when dropped, its log printed
/// if that happens while a test fails.
pub struct Proc {
    name: String,
    child: Child,
    output: Arc<Output>,
}

impl Proc {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the `listening on ADDR` line.
    pub fn wait_listening(&mut self, timeout: Duration) -> anyhow::Result<SocketAddr> {
        let (addr, closed) = {
            let log = self
                .output
                .wait(timeout, |log| log.addr.is_some() || log.closed);
            (log.addr, log.closed)
        };
        if let Some(addr) = addr {
            return Ok(addr);
        }
        if closed {
            let how = match self.wait_exit(Duration::from_secs(5)) {
                Some(status) => format!("exited ({status})"),
                None => "closed its stderr".to_owned(),
            };
            bail!(
                "{} {how} before listening:\n{}",
                self.name,
                self.log_tail(QUOTED_LINES)
            );
        }
        bail!(
            "{} logged no listening address within {timeout:?}:\n{}",
            self.name,
            self.log_tail(QUOTED_LINES)
        )
    }

    /// The address it listens on; panics when it has not logged one.
    pub fn addr(&self) -> SocketAddr {
        self.output
            .lock()
            .addr
            .unwrap_or_else(|| panic!("{} has not logged a listening address", self.name))
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// Everything it logged so far, a line each.
    pub fn log(&self) -> String {
        self.log_tail(KEPT_LINES)
    }

    /// The last `lines` lines it logged.
    pub fn log_tail(&self, lines: usize) -> String {
        self.output.lock().tail(lines)
    }

    /// Waits until a line containing `needle` is logged; whether one was.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let found = |log: &Log| log.lines.iter().any(|line| line.contains(needle));
        found(&self.output.wait(timeout, found))
    }

    /// Waits for the process to exit by itself; `None` if it has not within
    /// `timeout`.
    /// Waits for the process to exit, and for its last log lines to be
    /// read (the reader thread may lag the exit), for `timeout` at most.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = Deadline::after(timeout)
            .every(EXIT_POLL)
            .poll(|| self.child.try_wait().ok().flatten())?;
        // stderr closes with the process; a child it started could hold it
        // open, so this wait is bounded too.
        drop(self.output.wait(timeout, |log| log.closed));
        Some(status)
    }

    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = Pid::from_raw(self.pid() as i32);
        kill(pid, signal).with_context(|| format!("sending {signal} to {}", self.name))
    }

    /// SIGTERM, then its exit status; an error if it does not exit within
    /// `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        self.wait_exit(timeout)
            .with_context(|| format!("{} still running {timeout:?} after SIGTERM", self.name))
    }

    /// SIGKILL: no chance to deregister or flush anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// CPU time (user + system) it has used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        usage::cpu_time(self.pid())
    }

    /// Its resident memory, in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        usage::rss_bytes(self.pid())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Launch {
        Launch::new("sh", "/bin/sh").args(["-c", script])
    }

    #[test]
    fn the_logged_address_is_read_back() {
        let script =
            "echo starting >&2; echo 'INFO listening on 127.0.0.1:4321' >&2; exec sleep 30";
        let mut proc = shell(script).start().unwrap();
        assert_eq!(proc.addr(), "127.0.0.1:4321".parse().unwrap());
        assert_eq!(proc.url("/x"), "http://127.0.0.1:4321/x");
        assert!(proc.wait_for_log("starting", Duration::from_secs(5)));
        proc.kill9();
        assert!(proc.wait_exit(Duration::from_secs(5)).is_some());
    }

    #[test]
    fn a_process_that_exits_before_listening_is_an_error_with_its_log() {
        let error = shell("echo 'error: no such plugin' >&2; exit 3")
            .start()
            .err()
            .expect("it never listens");
        let error = format!("{error:#}");
        assert!(error.contains("exited"), "{error}");
        assert!(error.contains("error: no such plugin"), "{error}");
    }

    #[test]
    fn sigterm_ends_a_process_and_gives_its_status() {
        let mut proc = shell("exec sleep 30").spawn().unwrap();
        let status = proc.terminate(Duration::from_secs(10)).unwrap();
        assert!(!status.success());
    }
}

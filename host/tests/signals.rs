//! Signals from the first millisecond: the host holds SIGINT, SIGTERM and
//! SIGHUP before it does anything else (an ELF constructor, before `main`),
//! so a stop sent while it is still starting ends it cleanly (exit 0) and a
//! reload does not kill it.
//!
//! These need a real process: a signal's default action is what is tested.
//! "Starts" is when the process runs its own code: on a loaded machine the
//! kernel may not schedule a fresh process for a while after `exec`, and no
//! program can act on a signal before it runs. So each try waits until the
//! host shows the signals blocked (`SigBlk` in `/proc/PID/status`; they stay
//! blocked, a thread takes them with `sigwait`), then signals it at once or
//! 1 ms later.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const TRIES: usize = 5;

fn plugin() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/visit.wasm");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`",
        path.display()
    );
    path
}

/// A host that will take a while to start: it compiles its plugin (no
/// cache) and no registry answers it.
fn start_host() -> Child {
    Command::new(env!("CARGO_BIN_EXE_host"))
        .arg("--plugin")
        .arg(plugin())
        .args(["--addr", "127.0.0.1:0", "--no-cache"])
        .args(["--registry", "http://127.0.0.1:9", "--registry-wait", "30s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the host")
}

fn signal(child: &Child, signal: Signal) {
    kill(Pid::from_raw(child.id() as i32), signal).expect("sending a signal");
}

/// Waits until the process has run its first step: holding the signals.
fn wait_until_held(child: &Child) {
    let status = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    // SIGHUP, SIGINT and SIGTERM are bits 1, 2 and 15 (counted from 1).
    let wanted: u64 = (1 << 0) | (1 << 1) | (1 << 14);
    loop {
        let blocked = std::fs::read_to_string(&status)
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("SigBlk:"))?.to_owned();
                u64::from_str_radix(line["SigBlk:".len()..].trim(), 16).ok()
            })
            .unwrap_or(0);
        if blocked & wanted == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "the host never held its signals");
        std::thread::yield_now();
    }
}

fn wait(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("waiting for the host") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Sends `signals` to a starting host, at once or 1 ms after it runs, and
/// expects it to end with exit 0, over several tries.
fn early_signals_end_the_host_cleanly(signals: &[Signal]) {
    for try_ in 0..TRIES {
        let mut host = start_host();
        wait_until_held(&host);
        // The point of the test is the timing of the signal, not a wait for
        // some state: at once, or 1 ms into the start.
        if try_ % 2 == 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for &sent in signals {
            signal(&host, sent);
        }
        let status = wait(&mut host, Duration::from_secs(30));
        assert_eq!(
            status.map(|s| s.code()),
            Some(Some(0)),
            "try {try_}, {signals:?}: {status:?}"
        );
    }
}

#[test]
fn a_sigterm_1ms_after_start_ends_the_host_with_exit_0() {
    early_signals_end_the_host_cleanly(&[Signal::SIGTERM]);
}

#[test]
fn a_sighup_1ms_after_start_does_not_kill_the_host() {
    // Had SIGHUP's default action run, the host would be dead of it; instead
    // it stops when told, with exit 0.
    early_signals_end_the_host_cleanly(&[Signal::SIGHUP, Signal::SIGTERM]);
}

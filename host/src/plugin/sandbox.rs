//! The sandbox of one instance: its own store, its own WASI context (no
//! environment, no sockets, at most the one granted directory), a deadline
//! enforced through the engine's epoch, and what it means when a call into
//! it fails. Whatever the plugin does (trap, spin, grow without end) costs
//! its own request only.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{FsPerms, WasiCtx};

use wasmtime_wasi_http::WasiHttpCtx;

use super::cache::CompileCache;
use super::context::{LazyWasi, RequestCtx, ServiceEnv};
use crate::capabilities::http::OutgoingHttp;

/// Limits that every request's sandbox gets.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    pub request_timeout: Duration,
    pub memory_limit: usize,
    pub max_instances: u32,
    /// The directory the plugin may use, seen by it as `.`.
    pub dir: Option<GrantedDir>,
    /// Where compiled plugins are kept between runs; none: compile every
    /// time.
    pub compile_cache: Option<CompileCache>,
    /// Requests one instance may serve; 1 (the default) is a fresh
    /// instance for every request.
    pub reuse: u32,
    /// Requests that may wait for an instance slot at once; more are
    /// refused (503).
    pub max_queue: usize,
    /// How long a request may wait for an instance slot (503 after).
    pub queue_timeout: Duration,
}

/// The directory a service's plugin may use (`host --dir`), opened once when
/// the service starts and shared by every instance.
///
/// Opening it for each instance (as `WasiCtxBuilder::preopened_dir` does)
/// cost an `open` of the path per request: measured, the three services in
/// one process answered 4-5% more requests/s without it. Held open, the
/// grant is also fixed at start: a directory renamed or replaced later is
/// not picked up, as with any preopen.
#[derive(Clone)]
pub struct GrantedDir {
    path: PathBuf,
    /// A WASI filesystem context whose only preopen is the directory as
    /// `.`; each instance gets a clone (the descriptor is reference
    /// counted, not reopened).
    preopen: WasiFilesystemCtx,
}

impl GrantedDir {
    /// Opens `path` for reading and writing.
    pub fn open(path: &Path) -> Result<Self, String> {
        let mut wasi = WasiCtx::builder();
        // File operations on the granted directory are short local calls:
        // doing them in place is much cheaper than handing each to tokio's
        // blocking pool (and must be set before preopening).
        wasi.allow_blocking_current_thread(true);
        wasi.preopened_dir(path, ".", FsPerms::ReadWrite)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(GrantedDir {
            path: path.to_owned(),
            preopen: wasi.build().filesystem().clone(),
        })
    }
}

impl fmt::Debug for GrantedDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GrantedDir").field(&self.path).finish()
    }
}

/// Why a request got no response from the plugin.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// It ran past the request timeout and was stopped.
    #[error("stopped at the request timeout")]
    Timeout,
    /// It trapped (a panic, `unreachable`, a stack overflow, memory
    /// exhausted ...); the message says which.
    #[error("trapped: {0}")]
    Trap(String),
    /// Every instance slot stayed busy, and the queue for them was full or
    /// did not move within the queue timeout.
    #[error("every instance slot stayed busy")]
    Busy,
    /// The host could not set up an instance for it.
    #[error("cannot set up an instance: {0}")]
    Setup(String),
}

/// A fresh store for one instance of a plugin running as `env`, with its
/// deadline set one request timeout from now.
pub(super) fn new_store(
    engine: &Engine,
    settings: &SandboxSettings,
    env: Arc<ServiceEnv>,
) -> Store<RequestCtx> {
    let dir = settings.dir.as_ref().map(|dir| dir.preopen.clone());
    let ctx = RequestCtx {
        wasi: LazyWasi::new(env.name.clone(), dir),
        table: ResourceTable::new(),
        http: WasiHttpCtx::new(),
        outgoing: OutgoingHttp::new(env.clone()),
        env,
        deadline: Instant::now() + settings.request_timeout,
        trace: None,
    };
    let mut store = Store::new(engine, ctx);

    // Check the clock at every tick: yield to other requests while there
    // is time left, so that a spinning plugin never holds a runtime
    // thread for long, and interrupt it once time is up.
    //
    // The yield is tokio's own: it lets the thread poll for I/O and timers
    // before the plugin runs on. A plain yield (waking itself) puts the
    // task straight back in the run queue, and a thread checks for I/O
    // only every 61 tasks it runs: two spinning plugins on two threads
    // then kept the host deaf to new connections, heartbeats included, for
    // about 0.6 s at a time (61 ticks of 10 ms).
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        Ok(if Instant::now() >= ctx.data().deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
        })
    });
    store
}

/// The plugin frames a trap's log line shows, innermost first.
const MAX_FRAMES: usize = 16;

/// What a failed call into an instance means for the client. A trap is
/// described by its cause and the plugin's own frames, on one line: never the
/// host's native backtrace, which says nothing about the plugin.
pub(super) fn classify(error: wasmtime::Error) -> Failure {
    if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
        return Failure::Timeout;
    }
    let cause = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    let frames = error
        .downcast_ref::<WasmBacktrace>()
        .map(|backtrace| {
            let mut shown: Vec<String> = backtrace
                .frames()
                .iter()
                .take(MAX_FRAMES)
                .map(|frame| match frame.func_name() {
                    Some(name) => name.to_owned(),
                    // A stripped plugin has no names: its function index is
                    // what `wasm-tools` can look up.
                    None => format!("wasm-function[{}]", frame.func_index()),
                })
                .collect();
            if backtrace.frames().len() > MAX_FRAMES {
                shown.push("...".into());
            }
            shown.join(" <- ")
        })
        .unwrap_or_default();
    Failure::Trap(if frames.is_empty() {
        cause
    } else {
        format!("{cause}; plugin frames: {frames}")
    })
}

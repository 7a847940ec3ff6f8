//! One wasmtime engine per host, configured for many short-lived instances.
//!
//! Every request gets a fresh instance, so instantiation and teardown are the
//! hot path: the pooling allocator keeps pre-reserved slots for instances,
//! memories and tables, sized to what the host will run at once. Request
//! timeouts use epoch interruption driven by one ticker thread for the whole
//! engine, never a timer per request.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::Service;
use super::context::RequestCtx;

/// How often the epoch advances: the granularity of request timeouts and of
/// how long a busy plugin may hold a runtime thread before yielding.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How many finished instances' memories are returned to the kernel at once.
pub const DECOMMIT_BATCH: usize = 32;

/// How a fresh instance's memory gets the plugin's data segments.
///
/// For a small plugin (a Rust one: tens of KiB of data) copying is cheaper
/// than mapping a copy-on-write image and taking its page faults (measured:
/// 74 -> 46 us of host CPU per request, `bench --case host-overhead`); for a
/// big one (Python: 12 MiB of initial memory) copying costs milliseconds
/// (1.7 -> 8.1 ms a request), and copy-on-write wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MemoryInit {
    Copy,
    CopyOnWrite,
}

impl MemoryInit {
    /// Plugin files below this size get `Copy`.
    const SMALL_PLUGIN: u64 = 1 << 20;

    /// The better choice for a plugin file of `len` bytes.
    pub fn for_plugin_size(len: u64) -> Self {
        if len < Self::SMALL_PLUGIN {
            MemoryInit::Copy
        } else {
            MemoryInit::CopyOnWrite
        }
    }
}

/// Limits that every request's sandbox gets.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    pub request_timeout: Duration,
    pub memory_limit: usize,
    pub max_instances: u32,
    /// The directory the plugin may use, seen by it as `.`.
    pub dir: Option<PathBuf>,
    /// Where compiled plugins are kept between runs; none: compile every
    /// time.
    pub compile_cache: Option<PathBuf>,
    /// Requests one instance may serve; 1 (the default) is a fresh
    /// instance for every request.
    pub reuse: u32,
    pub memory_init: MemoryInit,
}

/// The engine, the linker with every host capability, and the bound on
/// concurrent instances.
pub struct PluginEngine {
    pub(super) engine: Engine,
    pub(super) linker: Linker<RequestCtx>,
    pub(super) settings: SandboxSettings,
    /// One permit per pool slot: a request waits for a slot instead of
    /// failing when every slot is busy.
    pub(super) slots: Arc<Semaphore>,
    _ticker: EpochTicker,
}

impl PluginEngine {
    pub fn new(settings: SandboxSettings) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(&settings))
            .map_err(anyhow::Error::from)
            .context("configuring wasmtime")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        Service::add_to_linker::<_, HasSelf<RequestCtx>>(&mut linker, |ctx| ctx)
            .map_err(anyhow::Error::from)
            .context("linking Sparrow's capabilities")?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(PluginEngine {
            slots: Arc::new(Semaphore::new(settings.max_instances as usize)),
            engine,
            linker,
            settings,
            _ticker: ticker,
        })
    }
}

fn engine_config(settings: &SandboxSettings) -> Config {
    // With reuse, up to as many idle instances as running ones stay in the
    // pool.
    let instances = if settings.reuse > 1 {
        settings.max_instances * 2
    } else {
        settings.max_instances
    };
    let mut pool = PoolingAllocationConfig::default();
    // A component built by wasm-component-ld holds the program's core module
    // plus a few small shims; languages with big runtimes hold more.
    pool.total_component_instances(instances)
        .total_core_instances(instances * 16)
        .total_memories(instances * 2)
        .total_tables(instances * 16)
        .total_stacks(instances)
        .max_memories_per_component(2)
        .max_memory_size(settings.memory_limit)
        // Returning memory to the kernel in batches makes teardown cheaper
        // (measured: 97 us of host CPU per request unbatched, 42 us in
        // batches of 32), but a finished instance's pages stay resident until
        // its batch is flushed: at most DECOMMIT_BATCH times the memory
        // limit.
        .decommit_batch_size(DECOMMIT_BATCH);

    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        // The reservation bounds the virtual address space of each memory
        // slot; the defaults (4 GiB and more per slot) add up to terabytes.
        .memory_reservation(settings.memory_limit as u64)
        .memory_reservation_for_growth(0)
        .memory_init_cow(settings.memory_init == MemoryInit::CopyOnWrite)
        .epoch_interruption(true);
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

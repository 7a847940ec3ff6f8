//! One wasmtime engine per host process, configured for many short-lived
//! instances, and each service's share of it.
//!
//! Every request gets a fresh instance, so instantiation and teardown are the
//! hot path: the pooling allocator keeps pre-reserved slots for instances,
//! memories and tables, sized to what the host will run at once (the sum
//! over the services it runs). Request timeouts use epoch interruption
//! driven by one ticker thread for the whole engine, never a timer per
//! request. Each service keeps its own instance slots, queue and request
//! timeout ([`PluginEngine`]), so that one service's load or a chain of
//! calls between services of one process never waits on another's slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};

use super::bindings::Service;
use super::context::{RequestCtx, ServiceEnv};
use super::sandbox::{self, Failure, SandboxSettings};

/// How often the epoch advances: the granularity of request timeouts and of
/// how long a busy plugin may hold a runtime thread before yielding.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How much of a finished instance's memory (and of each table) is reset in
/// place and kept resident for the next instance in its slot, rather than
/// handed back to the kernel.
///
/// Only the pages the instance wrote are reset: the kernel reports them
/// (`PAGEMAP_SCAN`, Linux 6.7 and later). A small plugin writes a few dozen
/// KiB per request, so its slot is reset with a memcpy and the next instance
/// takes no page fault, where releasing and faulting the pages back costs
/// page-table updates and TLB-shootdown interrupts on every core (measured:
/// 42 -> 35 us of host CPU per request, `bench --case host-overhead`).
/// Whatever a plugin wrote beyond this is released to the kernel, which
/// bounds the resident memory that idle slots keep. On older kernels every
/// page is released.
///
/// With only written pages reset, wasmtime's copy-on-write initialisation
/// costs a small plugin no more than copying its data segments (measured:
/// 35 against 36 us), and a big one (Python: 12 MiB of initial memory) far
/// less, so every plugin gets it.
pub const KEEP_RESIDENT: usize = 2 << 20;

/// The wasmtime engine, the linkers with every host capability and the
/// epoch ticker: one per process, shared by every service it runs.
pub struct EngineCore {
    engine: Engine,
    linker: Linker<RequestCtx>,
    /// WASI and `wasi:http`, for standard components: kept apart so that a
    /// `sparrow:service` plugin importing `wasi:http` is still refused.
    proxy_linker: Linker<RequestCtx>,
    _ticker: EpochTicker,
}

impl EngineCore {
    /// An engine whose pool holds the instances of every service in
    /// `services`, each of at most `memory_limit` of linear memory.
    pub fn new(services: &[SandboxSettings], memory_limit: usize) -> anyhow::Result<Arc<Self>> {
        let instances = pool_slots(services, max_map_count())?;
        let engine = Engine::new(&engine_config(instances, memory_limit))
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "configuring wasmtime: a pool of {instances} instance slots (max-instances, \
                     summed over the services) of --memory-limit {memory_limit} bytes each"
                )
            })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        Service::add_to_linker::<_, HasSelf<RequestCtx>>(&mut linker, |ctx| ctx)
            .map_err(anyhow::Error::from)
            .context("linking Sparrow's capabilities")?;
        let mut proxy_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut proxy_linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut proxy_linker))
            .map_err(anyhow::Error::from)
            .context("linking wasi:http")?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Arc::new(EngineCore {
            engine,
            linker,
            proxy_linker,
            _ticker: ticker,
        }))
    }
}

/// One service's use of the shared engine: its sandbox settings and its
/// bound on concurrent instances.
pub struct PluginEngine {
    core: Arc<EngineCore>,
    pub(super) settings: SandboxSettings,
    /// One permit per instance slot of this service: a request waits for a
    /// slot instead of failing when every slot is busy.
    pub(super) slots: Arc<Semaphore>,
    /// Requests waiting for a slot now.
    waiting: AtomicUsize,
}

impl PluginEngine {
    /// An engine of its own, for a host that runs one service.
    pub fn new(settings: SandboxSettings) -> anyhow::Result<Self> {
        let core = EngineCore::new(std::slice::from_ref(&settings), settings.memory_limit)?;
        Ok(PluginEngine::on(core, settings))
    }

    /// A service's share of `core`, which must have been sized for it.
    pub fn on(core: Arc<EngineCore>, settings: SandboxSettings) -> Self {
        PluginEngine {
            slots: Arc::new(Semaphore::new(settings.max_instances as usize)),
            waiting: AtomicUsize::new(0),
            core,
            settings,
        }
    }

    pub(super) fn engine(&self) -> &Engine {
        &self.core.engine
    }

    pub(super) fn linker(&self) -> &Linker<RequestCtx> {
        &self.core.linker
    }

    pub(super) fn proxy_linker(&self) -> &Linker<RequestCtx> {
        &self.core.proxy_linker
    }

    /// A fresh store for one instance of a plugin running as `env`.
    pub(super) fn new_store(&self, env: Arc<ServiceEnv>) -> Store<RequestCtx> {
        sandbox::new_store(&self.core.engine, &self.settings, env)
    }

    /// An instance slot. When every slot is busy the request queues, but
    /// only behind [`SandboxSettings::max_queue`] others and for
    /// [`SandboxSettings::queue_timeout`] at most: under overload a client
    /// gets a quick 503 rather than an endless queue or a request that gets
    /// its slot with no time left to run.
    ///
    /// The slot is owned: a standard component's instance keeps it in its
    /// own task while its response body streams.
    pub(super) async fn slot(&self) -> Result<OwnedSemaphorePermit, Failure> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        let _waiting = Waiting::join(&self.waiting, self.settings.max_queue)?;
        let acquire = self.slots.clone().acquire_owned();
        match tokio::time::timeout(self.settings.queue_timeout, acquire).await {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_closed)) => Err(Failure::Setup("the host is shutting down".into())),
            Err(_elapsed) => Err(Failure::Busy),
        }
    }
}

/// One request in the queue for a slot; leaves it when dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn join(waiting: &'a AtomicUsize, max: usize) -> Result<Self, Failure> {
        if waiting.fetch_add(1, Ordering::AcqRel) >= max {
            waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Failure::Busy);
        }
        Ok(Waiting(waiting))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Memory mappings one pool slot may take, which the kernel bounds per
/// process (`vm.max_map_count`): its stack and the guard page below it (2,
/// mapped when the pool is made), and for each of its memories, once an
/// instance used it, the plugin's initial image and the accessible part
/// cut out of the pool's reservation (4, kept for the next instance of the
/// slot). Measured: 400 slots of the echo stub map 800 at start, and 300 of
/// them in use 1200 more.
pub const MAPS_PER_SLOT: u64 = 2 + 4 * MEMORIES_PER_SLOT as u64;

/// Memories one instance may have: a component's core module, and a second
/// for languages whose runtime brings its own.
const MEMORIES_PER_SLOT: u32 = 2;

/// Mappings left for everything but the pool: the host's code and heap,
/// its threads' stacks (tokio's blocking pool alone may take 1024), the
/// compiled plugins (old versions too, while their requests finish).
pub const RESERVED_MAPS: u64 = 5_000;

/// The kernel's bound on mappings per process; `None` when it cannot be
/// read (no such bound, or not Linux).
fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The pool slots that `services` take in all, refused when their mappings
/// would pass `max_map_count`: wasmtime would fail at start (the stacks'
/// guard pages) or, worse, under load, when instances map their memories.
fn pool_slots(services: &[SandboxSettings], max_map_count: Option<u64>) -> anyhow::Result<u32> {
    let slots: u64 = services.iter().map(|s| u64::from(pool_instances(s))).sum();
    let limit = max_map_count.map_or(u64::from(u32::MAX), |count| {
        count.saturating_sub(RESERVED_MAPS) / MAPS_PER_SLOT
    });
    let reused = if services.iter().any(|s| s.reuse > 1) {
        " (twice a service's with --reuse)"
    } else {
        ""
    };
    match (u32::try_from(slots), max_map_count) {
        (Ok(slots), _) if u64::from(slots) <= limit => Ok(slots),
        (_, Some(count)) => anyhow::bail!(
            "max-instances (summed over the services of this host) needs {slots} instance \
             slots{reused}, more than the {limit} one process can map: each slot takes up to \
             {MAPS_PER_SLOT} memory mappings, vm.max_map_count is {count} and {RESERVED_MAPS} are \
             kept for the rest; lower max-instances, or raise vm.max_map_count (sysctl)"
        ),
        (_, None) => anyhow::bail!(
            "max-instances (summed over the services of this host) needs {slots} instance \
             slots{reused}, more than the {limit} one pool holds"
        ),
    }
}

/// The pool slots one service may take: with reuse, up to as many idle
/// instances as running ones stay in the pool.
fn pool_instances(settings: &SandboxSettings) -> u32 {
    if settings.reuse > 1 {
        settings.max_instances * 2
    } else {
        settings.max_instances
    }
}

fn engine_config(instances: u32, memory_limit: usize) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    // A component built by wasm-component-ld holds the program's core module
    // plus a few small shims; languages with big runtimes hold more.
    pool.total_component_instances(instances)
        .total_core_instances(instances * 16)
        .total_memories(instances * MEMORIES_PER_SLOT)
        .total_tables(instances * 16)
        .total_stacks(instances)
        .max_memories_per_component(MEMORIES_PER_SLOT)
        .max_memory_size(memory_limit);
    // Without the scan, keeping memory resident would mean zeroing all of it
    // on every reset, which costs more than the page faults it saves.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
    } else {
        tracing::info!(
            "PAGEMAP_SCAN unavailable (Linux < 6.7): instance memory is released after each request"
        );
    }

    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        // The reservation bounds the virtual address space of each memory
        // slot; the defaults (4 GiB and more per slot) add up to terabytes.
        .memory_reservation(memory_limit as u64)
        .memory_reservation_for_growth(0)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn service(max_instances: u32, reuse: u32) -> SandboxSettings {
        SandboxSettings {
            request_timeout: Duration::from_secs(1),
            memory_limit: 1 << 20,
            max_instances,
            dir: None,
            compile_cache: None,
            reuse,
            max_queue: 0,
            queue_timeout: Duration::ZERO,
        }
    }

    #[test]
    fn a_pool_past_what_the_process_can_map_is_refused_naming_the_numbers() {
        let default = Some(65_530);
        // (65530 - 5000) / 10
        assert_eq!(pool_slots(&[service(6053, 1)], default).unwrap(), 6053);
        let four = vec![service(10_000, 1); 4];
        let error = pool_slots(&four, default).unwrap_err().to_string();
        assert_eq!(
            error,
            "max-instances (summed over the services of this host) needs 40000 instance slots, \
             more than the 6053 one process can map: each slot takes up to 10 memory mappings, \
             vm.max_map_count is 65530 and 5000 are kept for the rest; lower max-instances, or \
             raise vm.max_map_count (sysctl)"
        );
        let many = vec![service(128, 1); 300];
        assert!(
            pool_slots(&many, default)
                .unwrap_err()
                .to_string()
                .contains("38400")
        );
        let reused = pool_slots(&[service(4000, 2)], default)
            .unwrap_err()
            .to_string();
        assert!(
            reused.contains("8000 instance slots (twice a service's with --reuse)"),
            "{reused}"
        );
        assert_eq!(pool_slots(&four, Some(1 << 20)).unwrap(), 40_000);
        assert_eq!(pool_slots(&four, None).unwrap(), 40_000);
    }
}

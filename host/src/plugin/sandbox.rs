//! One request in a fresh instance: its own store, its own memory, its own
//! WASI context, bounded in time and memory, and gone when the request ends.
//! Whatever the plugin does (trap, spin, grow without end) costs this request
//! only.
//!
//! `--reuse N` trades some of that isolation for speed: an instance that
//! answered serves up to N requests, one at a time, so what a plugin keeps
//! in its own memory is seen by later requests. An instance that failed is
//! never reused.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx};

use super::bindings::{Description, Request, Response, Service, ServicePre};
use super::context::{RequestCtx, ServiceEnv};
use super::engine::PluginEngine;
use super::loader::Plugin;
use super::stdio::PluginOutput;

/// Why a request got no response from the plugin.
#[derive(Debug)]
pub enum Failure {
    /// It ran past the request timeout and was stopped.
    Timeout,
    /// It trapped (a panic, `unreachable`, a stack overflow, memory
    /// exhausted ...); the message says which.
    Trap(String),
    /// Every instance slot stayed busy for the whole request timeout.
    Busy,
    /// The host could not set up an instance for it.
    Setup(String),
}

/// An instance kept to serve more requests (`--reuse N`, off by default).
pub(super) struct Warm {
    store: Store<RequestCtx>,
    service: Service,
    /// Requests it has served so far.
    served: u32,
}

impl PluginEngine {
    /// Runs `request` through `plugin` in a fresh instance (or, with
    /// `--reuse`, in one that served fewer than N requests without failing).
    /// The whole request, waiting for a slot included, gets the request
    /// timeout.
    pub async fn handle(
        &self,
        plugin: &Plugin,
        env: Arc<ServiceEnv>,
        request: Request,
    ) -> Result<Response, Failure> {
        let deadline = tokio::time::Instant::now() + self.settings.request_timeout;
        // Under overload a client gets a quick 503 rather than an endless
        // queue.
        let _slot = match tokio::time::timeout_at(deadline, self.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_closed)) => return Err(Failure::Setup("the host is shutting down".into())),
            Err(_elapsed) => return Err(Failure::Busy),
        };
        let (mut store, warm_service, served) = match self.take_warm(plugin) {
            Some(warm) => (warm.store, Some(warm.service), warm.served),
            None => (self.new_store(env).map_err(Failure::Setup)?, None, 0),
        };
        store.data_mut().deadline = deadline.into_std();
        store.set_epoch_deadline(1);
        let call = async {
            let service = match warm_service {
                Some(service) => service,
                None => plugin.pre.instantiate_async(&mut store).await?,
            };
            let response = service.call_handle_request(&mut store, &request).await?;
            Ok::<_, wasmtime::Error>((service, response))
        };
        // The epoch deadline stops code that spins; this timer stops a plugin
        // that waits on the host (a slow call to another service) too.
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok((service, response))) => {
                self.keep_warm(
                    plugin,
                    Warm {
                        store,
                        service,
                        served: served + 1,
                    },
                );
                Ok(response)
            }
            // A failed instance is never used again.
            Ok(Err(error)) => Err(classify(error)),
            Err(_elapsed) => Err(Failure::Timeout),
        }
    }

    fn take_warm(&self, plugin: &Plugin) -> Option<Warm> {
        if self.settings.reuse <= 1 {
            return None;
        }
        plugin.warm.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn keep_warm(&self, plugin: &Plugin, warm: Warm) {
        if warm.served >= self.settings.reuse {
            return;
        }
        let mut idle = plugin.warm.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.settings.max_instances as usize {
            idle.push(warm);
        }
    }

    /// Asks a freshly loaded plugin who it is.
    pub(super) async fn describe(
        &self,
        pre: &ServicePre<RequestCtx>,
        env: Arc<ServiceEnv>,
    ) -> anyhow::Result<Description> {
        let mut store = self.new_store(env).map_err(anyhow::Error::msg)?;
        let service = pre.instantiate_async(&mut store).await?;
        Ok(service.call_describe(&mut store).await?)
    }

    fn new_store(&self, env: Arc<ServiceEnv>) -> Result<Store<RequestCtx>, String> {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(PluginOutput::stdout(env.name.clone()))
            .stderr(PluginOutput::stderr(env.name.clone()))
            // File operations on the granted directory are short local
            // calls: doing them in place is much cheaper than handing each
            // to tokio's blocking pool (and must be set before preopening).
            .allow_blocking_current_thread(true);
        if let Some(dir) = &self.settings.dir {
            wasi.preopened_dir(dir, ".", FsPerms::ReadWrite)
                .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
        }
        let ctx = RequestCtx {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            env,
            deadline: Instant::now() + self.settings.request_timeout,
        };
        let mut store = Store::new(&self.engine, ctx);

        // Check the clock at every tick: yield to other requests while there
        // is time left, so that a spinning plugin never holds a runtime
        // thread for long, and interrupt it once time is up.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        Ok(store)
    }
}

fn classify(error: wasmtime::Error) -> Failure {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Failure::Timeout,
        Some(trap) => Failure::Trap(format!("{trap}: {error:?}")),
        None => Failure::Trap(format!("{error:?}")),
    }
}

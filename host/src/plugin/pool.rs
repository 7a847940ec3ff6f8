//! Where a request's instance comes from: a fresh one from the
//! pre-instantiated component (the default), or, with `--reuse N`, one that
//! served fewer than N requests without failing.
//!
//! Reuse trades some isolation for speed: what a plugin keeps in its own
//! memory is seen by later requests. An instance that failed is never
//! reused. The pool belongs to one plugin version and goes with it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use protocol::locks::lock;
use wasmtime::Store;

use super::bindings::{Description, Request, Response, Service, ServicePre};
use super::context::{RequestCtx, ServiceEnv};
use super::engine::PluginEngine;
use super::sandbox::Failure;
use crate::trace::Hop;

/// A store, with its instance once it has one, for one request at a time.
pub(super) struct Instance {
    store: Store<RequestCtx>,
    /// `None` until instantiated: a fresh instance is made inside the
    /// request's deadline, like the call itself.
    service: Option<Service>,
    /// Requests it has served so far.
    served: u32,
    /// When set-up began, until it is instantiated.
    created: Option<Instant>,
}

impl Instance {
    /// Gives the instance until `deadline` (checked at every epoch tick),
    /// for a request traced as `trace` (none while a plugin describes
    /// itself).
    pub(super) fn arm(&mut self, deadline: std::time::Instant, trace: Option<Hop>) {
        let data = self.store.data_mut();
        data.deadline = deadline;
        data.trace = trace;
        self.store.set_epoch_deadline(1);
    }
}

/// The instances of one plugin version.
pub(super) struct InstancePool {
    pre: ServicePre<RequestCtx>,
    /// Requests one instance may serve; 1 means a fresh one every time.
    reuse: u32,
    /// At most this many idle instances are kept.
    max_idle: usize,
    idle: Mutex<Vec<Instance>>,
}

impl InstancePool {
    pub(super) fn new(pre: ServicePre<RequestCtx>, reuse: u32, max_idle: usize) -> Self {
        InstancePool {
            pre,
            reuse,
            max_idle,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle instance if reuse is on and one is kept, else a new store.
    pub(super) fn take(
        &self,
        engine: &PluginEngine,
        env: Arc<ServiceEnv>,
    ) -> Result<Instance, Failure> {
        if self.reuse > 1
            && let Some(instance) = lock(&self.idle).pop()
        {
            return Ok(instance);
        }
        let created = Instant::now();
        let store = engine.new_store(env);
        Ok(Instance {
            store,
            service: None,
            served: 0,
            created: Some(created),
        })
    }

    /// Runs `request` in `instance`, instantiating it first if it is new.
    pub(super) async fn handle(
        &self,
        instance: &mut Instance,
        request: &Request,
    ) -> wasmtime::Result<Response> {
        let (service, store) = self.ready(instance).await?;
        service.call_handle_request(store, request).await
    }

    /// Asks the plugin in `instance` who it is.
    pub(super) async fn describe(&self, instance: &mut Instance) -> wasmtime::Result<Description> {
        let (service, store) = self.ready(instance).await?;
        service.call_describe(store).await
    }

    async fn ready<'a>(
        &self,
        instance: &'a mut Instance,
    ) -> wasmtime::Result<(&'a Service, &'a mut Store<RequestCtx>)> {
        let Instance {
            store,
            service,
            created,
            ..
        } = instance;
        let ready = match service.take() {
            Some(ready) => ready,
            None => {
                let ready = self.pre.instantiate_async(&mut *store).await?;
                if let Some(created) = created.take() {
                    store.data().env.metrics.instance_setup(created.elapsed());
                }
                ready
            }
        };
        Ok((&*service.insert(ready), store))
    }

    /// Takes back an instance that answered; it is dropped once it has
    /// served its share. One that failed must never come back here.
    pub(super) fn give_back(&self, mut instance: Instance) {
        instance.served += 1;
        if instance.served >= self.reuse {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle {
            idle.push(instance);
        }
    }
}

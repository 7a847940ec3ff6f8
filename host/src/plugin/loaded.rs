//! A plugin version loaded and ready to serve: what it said about itself,
//! which file it came from, and its instances; and serving one request with
//! it, within the request timeout and one instance slot.

use std::sync::Arc;

use super::bindings::{Description, Request, Response};
use super::context::ServiceEnv;
use super::engine::PluginEngine;
use super::pool::InstancePool;
use super::sandbox::{Failure, classify};
use crate::metrics::FailureKind;
use crate::trace::Hop;

/// A compiled, linked plugin: instantiating it for a request is cheap.
pub struct Plugin {
    pub(super) pool: InstancePool,
    /// What the plugin said about itself when it was loaded.
    pub description: Description,
    /// The SHA-256 of the file, in hex: which version this is.
    pub digest: String,
}

impl Plugin {
    /// Runs `request` in an instance of this version, once it has a slot,
    /// for the request timeout at most; the plugin's calls carry `trace`.
    pub async fn handle(
        &self,
        engine: &PluginEngine,
        env: Arc<ServiceEnv>,
        request: Request,
        trace: Hop,
    ) -> Result<Response, Failure> {
        let metrics = env.metrics.clone();
        let answer = self.run(engine, env, request, trace).await;
        if let Err(failure) = &answer {
            metrics.failure(match failure {
                Failure::Timeout => FailureKind::Timeout,
                Failure::Trap(_) => FailureKind::Trap,
                Failure::Busy => FailureKind::Busy,
                Failure::Setup(_) => FailureKind::Setup,
            });
        }
        answer
    }

    async fn run(
        &self,
        engine: &PluginEngine,
        env: Arc<ServiceEnv>,
        request: Request,
        trace: Hop,
    ) -> Result<Response, Failure> {
        let _slot = engine.slot().await?;
        let _in_use = env.metrics.in_use();
        let deadline = tokio::time::Instant::now() + engine.settings.request_timeout;
        let mut instance = self.pool.take(engine, env)?;
        instance.arm(deadline.into_std(), Some(trace));
        // The epoch deadline stops code that spins; this timer stops a plugin
        // that waits on the host (a slow call to another service) too.
        match tokio::time::timeout_at(deadline, self.pool.handle(&mut instance, &request)).await {
            Ok(Ok(response)) => {
                self.pool.give_back(instance);
                Ok(response)
            }
            // A failed instance is never used again.
            Ok(Err(error)) => Err(classify(error)),
            Err(_elapsed) => Err(Failure::Timeout),
        }
    }
}

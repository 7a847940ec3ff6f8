//! A plugin version loaded and ready to serve: what it said about itself,
//! which file it came from, and its instances; and serving one request with
//! it, within the request timeout and one instance slot. A plugin is of one
//! of two kinds: a `sparrow:service` component, which gets a whole request
//! and gives a whole response, or a standard `wasi:http/proxy` one (see
//! `proxy`), whose bodies stream.

use std::sync::Arc;

use super::bindings::{Description, Request, Response};
use super::context::ServiceEnv;
use super::engine::PluginEngine;
use super::pool::InstancePool;
use super::proxy::{HttpCall, ProxyPlugin};
use super::sandbox::{Failure, classify};
use crate::metrics::{FailureKind, ServiceMetrics};
use crate::trace::Hop;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A compiled, linked plugin: instantiating it for a request is cheap.
pub struct Plugin {
    pub(super) kind: Kind,
    /// What the plugin said about itself when it was loaded; for a standard
    /// component, which cannot describe itself, an empty name and nothing
    /// required: the command line must say.
    pub description: Description,
    /// The SHA-256 of the file, in hex: which version this is.
    pub digest: String,
}

/// The world a plugin was built for, which decides how it is called.
pub(super) enum Kind {
    Service(InstancePool),
    Proxy(ProxyPlugin),
}

impl Plugin {
    /// Whether the component can say its name and what it requires (a
    /// `sparrow:service` one), or must be told (`wasi:http/proxy`).
    pub fn describes_itself(&self) -> bool {
        matches!(self.kind, Kind::Service(_))
    }

    /// Whether requests go to it as HTTP, through [`Plugin::handle_http`],
    /// rather than through [`Plugin::handle`].
    pub fn takes_http(&self) -> bool {
        matches!(self.kind, Kind::Proxy(_))
    }

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
        counted(&metrics, self.run(engine, env, request, trace).await)
    }

    /// Runs an HTTP request in a fresh instance of a standard component;
    /// its response's body streams from the instance.
    pub async fn handle_http(
        &self,
        engine: &PluginEngine,
        env: Arc<ServiceEnv>,
        call: HttpCall,
    ) -> Result<http::Response<HyperOutgoingBody>, Failure> {
        let Kind::Proxy(proxy) = &self.kind else {
            return Err(Failure::Setup(
                "a sparrow:service plugin takes whole requests".into(),
            ));
        };
        let metrics = env.metrics.clone();
        let body = call.body.clone();
        let answer = proxy.run(engine, env, call).await;
        // A failure the client's body caused is not the component's.
        if answer.is_err() && body.fault().is_some() {
            return answer;
        }
        counted(&metrics, answer)
    }

    async fn run(
        &self,
        engine: &PluginEngine,
        env: Arc<ServiceEnv>,
        request: Request,
        trace: Hop,
    ) -> Result<Response, Failure> {
        let Kind::Service(pool) = &self.kind else {
            return Err(Failure::Setup(
                "a wasi:http component takes HTTP requests".into(),
            ));
        };
        let _slot = engine.slot().await?;
        let _in_use = env.metrics.in_use();
        let deadline = tokio::time::Instant::now() + engine.settings.request_timeout;
        let mut instance = pool.take(engine, env)?;
        instance.arm(deadline.into_std(), Some(trace));
        // The epoch deadline stops code that spins; this timer stops a plugin
        // that waits on the host (a slow call to another service) too.
        match tokio::time::timeout_at(deadline, pool.handle(&mut instance, &request)).await {
            Ok(Ok(response)) => {
                pool.give_back(instance);
                Ok(response)
            }
            // A failed instance is never used again.
            Ok(Err(error)) => Err(classify(error)),
            Err(_elapsed) => Err(Failure::Timeout),
        }
    }
}

/// Counts a request the plugin gave no response to.
fn counted<T>(metrics: &ServiceMetrics, answer: Result<T, Failure>) -> Result<T, Failure> {
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

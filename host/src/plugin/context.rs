//! What a store holds while one request runs: WASI's state (no environment,
//! no sockets, at most one directory), `wasi:http`'s for a standard
//! component, and the service's environment, through which the capabilities
//! reach the host.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use crate::discovery::cache::InstanceCache;
use protocol::http::HttpClient;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capabilities::http::OutgoingHttp;
use crate::plugin::stdio::PluginOutput;

use crate::appends::Appends;
use crate::kv::KvStore;
use crate::metrics::{HostMetrics, ServiceMetrics};
use crate::outbound::{Outbound, set_source};
use crate::trace::{HOPS_HEADER, Hop};

/// What the host keeps for its plugin across requests and plugin versions.
#[derive(Clone)]
pub struct Shared {
    pub cache: Arc<InstanceCache>,
    pub outbound: Outbound,
    pub outgoing: Arc<OutgoingSettings>,
    pub kv: Arc<KvStore>,
    /// With `--dir`: its files held open for `files.append`.
    pub appends: Option<Arc<Appends>>,
    /// With `--metrics-addr`; none: nothing is counted.
    pub metrics: Option<Arc<HostMetrics>>,
}

/// Where a standard component's outgoing requests may go besides the
/// services it requires, and the bounds of every call.
pub struct OutgoingSettings {
    /// `--allow-outbound`: `HOST:PORT` addresses, as written in a URL.
    pub allow: Vec<String>,
    /// Sends requests to those addresses.
    pub client: HttpClient,
    /// `--call-timeout`.
    pub timeout: Duration,
    /// `--max-body`: the largest outgoing request body.
    pub max_body: usize,
    /// `--max-hops`: the longest chain of calls.
    pub max_hops: u32,
}

impl Shared {
    /// The environment of a plugin version registered as `name`.
    pub fn env(&self, name: String, requires: Vec<String>) -> Arc<ServiceEnv> {
        let metrics = ServiceMetrics::new(self.metrics.as_ref(), &name, &requires);
        self.env_with(name, requires, metrics)
    }

    /// The environment of a plugin being loaded, before it is asked who it
    /// is: it may call nothing, and what it does is not counted as the
    /// service's.
    pub fn loading_env(&self) -> Arc<ServiceEnv> {
        self.env_with("plugin".into(), Vec::new(), ServiceMetrics::off())
    }

    fn env_with(
        &self,
        name: String,
        requires: Vec<String>,
        metrics: ServiceMetrics,
    ) -> Arc<ServiceEnv> {
        Arc::new(ServiceEnv {
            name: name.into(),
            requires,
            cache: self.cache.clone(),
            outbound: self.outbound.clone(),
            outgoing: self.outgoing.clone(),
            kv: self.kv.clone(),
            appends: self.appends.clone(),
            metrics,
        })
    }
}

/// Everything requests of one plugin version share.
pub struct ServiceEnv {
    /// The registered name, used as the source of log lines.
    /// Shared with the plugin's output streams, which tag each log line.
    pub name: Arc<str>,
    /// The services the plugin may reach (`*`: every service).
    pub requires: Vec<String>,
    pub cache: Arc<InstanceCache>,
    pub outbound: Outbound,
    /// A standard component's requests to other destinations.
    pub outgoing: Arc<OutgoingSettings>,
    pub kv: Arc<KvStore>,
    pub appends: Option<Arc<Appends>>,
    pub metrics: ServiceMetrics,
}

impl ServiceEnv {
    /// Whether the plugin declared that it calls `service`.
    pub fn may_call(&self, service: &str) -> bool {
        protocol::record::requires(&self.requires, service)
    }

    /// Marks `headers` as a call to `to` that this service makes while it
    /// serves the request `trace` (none while the plugin describes itself):
    /// this service as the source, the request's trace context and its hop
    /// count plus one, whatever the plugin set. Refused, and logged, when
    /// that count would pass `--max-hops`.
    pub fn mark_call(
        &self,
        to: &str,
        trace: Option<&Hop>,
        headers: &mut HeaderMap,
    ) -> Result<(), LoopDetected> {
        let hops = trace.map_or(1, Hop::next_hops);
        if hops > self.outgoing.max_hops {
            tracing::warn!(service = %self.name, to, hops, "call refused: loop detected");
            return Err(LoopDetected(self.outgoing.max_hops));
        }
        set_source(headers, &self.name);
        match trace {
            Some(trace) => trace.attach(headers),
            None => {
                headers.insert(HOPS_HEADER, HeaderValue::from(hops));
            }
        }
        Ok(())
    }
}

/// A call refused because its chain of calls would pass `--max-hops`.
#[derive(Debug, thiserror::Error)]
#[error("loop detected: the call would pass the limit of {0} hops (--max-hops)")]
pub struct LoopDetected(pub u32);

/// The data of one request's store.
pub struct RequestCtx {
    pub wasi: LazyWasi,
    pub table: ResourceTable,
    pub env: Arc<ServiceEnv>,
    /// When the current request must end.
    pub deadline: std::time::Instant,
    /// The current request's trace context, which the plugin's calls carry.
    pub trace: Option<Hop>,
    /// `wasi:http`'s state; unused by a `sparrow:service` plugin.
    pub http: WasiHttpCtx,
    /// Where a standard component's outgoing requests go.
    pub outgoing: OutgoingHttp,
}

impl WasiView for RequestCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self.wasi.get(),
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestCtx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outgoing,
        }
    }
}

/// An instance's WASI state (no environment, no sockets, at most the one
/// granted directory, its output to the host's log), built the first time
/// the plugin calls into WASI: Sparrow's own plugins import little or
/// nothing of it, and building and dropping it for every instance was a
/// measurable share of a request that touches three instances.
pub struct LazyWasi {
    ctx: Option<WasiCtx>,
    service: Arc<str>,
    dir: Option<WasiFilesystemCtx>,
}

impl LazyWasi {
    /// For a plugin registered as `service`, granted `dir` as `.`.
    pub fn new(service: Arc<str>, dir: Option<WasiFilesystemCtx>) -> Self {
        LazyWasi {
            ctx: None,
            service,
            dir,
        }
    }

    fn get(&mut self) -> &mut WasiCtx {
        self.ctx.get_or_insert_with(|| {
            let mut wasi = WasiCtx::builder()
                .stdout(PluginOutput::stdout(self.service.clone()))
                .stderr(PluginOutput::stderr(self.service.clone()))
                .build();
            if let Some(dir) = self.dir.take() {
                *wasi.filesystem() = dir;
            }
            wasi
        })
    }
}

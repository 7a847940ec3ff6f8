//! The benchmark cases; each starts what it measures and stops it again, so
//! any one can run on its own (`--case NAME`).

mod end_to_end;
mod host_overhead;
mod hot_swap;
mod log;
mod proxy;
mod registry;
mod registry_etcd;
mod startup;

use clap::ValueEnum;

use crate::Settings;
use crate::report::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Case {
    /// Echo stub in a host vs a plain hyper server: throughput and latency.
    HostOverhead,
    /// Gateway -> visit -> log, real processes.
    EndToEnd,
    /// Registrations/s, one heartbeat sweep, notification fan-out; with
    /// etcd too, and the failover between two replicas.
    Registry,
    /// POST /log with and without --sync.
    Log,
    /// Plugin file replaced -> first answer from the new version.
    HotSwap,
    /// Host start -> first answer, cold and warm compile cache.
    Startup,
    /// The host's resident memory, idle and under load.
    Memory,
    /// A standard wasi:http component: in Sparrow vs the plain echo plugin,
    /// and vs `wasmtime serve`.
    Proxy,
}

impl Case {
    pub const ALL: [Case; 8] = [
        Case::HostOverhead,
        Case::Memory,
        Case::EndToEnd,
        Case::Log,
        Case::Registry,
        Case::HotSwap,
        Case::Startup,
        Case::Proxy,
    ];

    pub async fn run(self, settings: &Settings, also: &[Case]) -> anyhow::Result<Vec<Row>> {
        match self {
            // One load run serves both: memory is sampled during the
            // host-overhead load.
            Case::HostOverhead => {
                let with_memory = also.contains(&Case::Memory);
                host_overhead::run(settings, true, with_memory).await
            }
            Case::Memory if also.contains(&Case::HostOverhead) => Ok(Vec::new()),
            Case::Memory => host_overhead::run(settings, false, true).await,
            Case::EndToEnd => end_to_end::run(settings).await,
            Case::Registry => registry::run(settings).await,
            Case::Log => log::run(settings).await,
            Case::HotSwap => hot_swap::run(settings).await,
            Case::Startup => startup::run(settings).await,
            Case::Proxy => proxy::run(settings).await,
        }
    }
}

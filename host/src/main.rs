//! `host`: runs one Sparrow service.
//!
//! The service's logic is a WebAssembly component (the plugin); everything
//! around it is native and lives here:
//!
//! - [`cli`]: the command line.
//! - [`server`]: the HTTP server, routing protocol endpoints to [`discovery`]
//!   and everything else to the plugin, and draining on shutdown.
//! - [`discovery`]: registration with the registry, the instance cache, the
//!   `/heart-beat` and `/services` endpoints of the protocol.
//! - [`plugin`]: the wasmtime engine, loading a component, and running one
//!   request in a fresh instance.
//! - [`capabilities`]: what the host offers a plugin, one module per WIT
//!   interface.
//! - [`outbound`]: HTTP calls from the host to other services.
//! - [`durability`]: `--sync`, flushing the plugin's writes before answering.
//! - [`kv`]: the key-value state kept for the plugin.
//! - [`swap`]: hot swap of the plugin while the host serves.
//! - [`service`]: the life of the service, from start to drained stop.

mod capabilities;
mod cli;
mod discovery;
mod durability;
mod kv;
mod outbound;
mod plugin;
mod server;
mod service;
mod swap;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = cli::Cli::parse();
    match service::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line that names the problem, for people and scripts alike.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! The `registry` binary: parses the command line, sets up logging, and
//! serves until SIGINT or SIGTERM.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Sparrow's service registry: services register with `POST /services`, are
/// heart-beaten with `GET /heart-beat`, and are told about the instances they
/// depend on.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (the log tells which)
    #[arg(long, default_value = "127.0.0.1:20000")]
    addr: String,

    #[command(flatten)]
    config: registry::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Install the handlers before serving, so that a signal that arrives
    // right after the "listening" line is not lost.
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let listener = protocol::accept::bind(&cli.addr, cli.config.serve.backlog)
        .await
        .with_context(|| format!("binding {}", cli.addr))?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    };
    registry::serve(listener, cli.config, shutdown).await?;
    Ok(())
}

//! The `registry` binary: parses the command line, sets up logging, and
//! serves until SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Sparrow's service registry: services register with `POST /services`, are
/// heart-beaten with `GET /heart-beat`, and are told about the instances they
/// depend on.
#[derive(Parser)]
#[command(version, mut_args = protocol::duration::signed_values)]
struct Cli {
    /// Address to listen on (IP:PORT); port 0 picks a free port (the log
    /// tells which)
    #[arg(long, default_value = "127.0.0.1:20000", value_parser = protocol::accept::listen_addr)]
    addr: SocketAddr,

    #[command(flatten)]
    config: registry::Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let served = tokio::runtime::Runtime::new()
        .context("starting the runtime")
        .and_then(|runtime| runtime.block_on(serve(cli)));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line naming the problem, as the host and clap write it.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    // Install the handlers before serving, so that a signal that arrives
    // right after the "listening" line is not lost.
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let listener = protocol::accept::bind(cli.addr, cli.config.serve.backlog)
        .await
        .with_context(|| format!("cannot listen on {}", cli.addr))?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    };
    registry::serve(listener, cli.config, shutdown).await?;
    Ok(())
}

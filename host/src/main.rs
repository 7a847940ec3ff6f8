//! The `host` binary: the signals first, then logging, the command line, and
//! the service until SIGINT or SIGTERM. Everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use host::{Cli, Signals};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Before anything else, so that a signal sent the moment the process
    // starts is held until the handlers exist instead of killing it.
    let signals = match Signals::hold() {
        Ok(signals) => signals,
        Err(e) => return fail(&e),
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&anyhow::Error::new(e).context("starting the runtime")),
    };
    let result = runtime.block_on(async move {
        let control = signals.install()?;
        host::serve(cli, control).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// One line that names the problem, for people and scripts alike.
fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}

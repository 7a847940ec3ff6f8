//! The `host` binary: the signals first, then logging, the command line, and
//! the service until SIGINT or SIGTERM. Everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use host::{Cli, CompileCli, Signals};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Blocks the stop and reload signals before `main`, as soon as the
/// program's own code runs at all (an ELF constructor), before any thread
/// exists: a signal that comes while the host starts is held, not fatal.
#[used]
#[unsafe(link_section = ".init_array")]
static HOLD_SIGNALS_EARLY: extern "C" fn() = {
    extern "C" fn hold() {
        // Failure here is reported by the same call in `main`.
        let _ = Signals::hold();
    }
    hold
};

fn main() -> ExitCode {
    // Done already by the constructor; this reports a failure.
    let signals = match Signals::hold() {
        Ok(signals) => signals,
        Err(e) => return fail(&e),
    };
    // Errors the host handles (a plugin's trap among them) must not each
    // capture a native backtrace, whatever RUST_BACKTRACE says for panics.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&anyhow::Error::new(e).context("starting the runtime")),
    };
    // `host compile ...` is a task of its own; `host --plugin ...` serves.
    let result = if std::env::args_os().nth(1).is_some_and(|a| a == "compile") {
        let cli = CompileCli::parse_from(std::env::args_os().skip(1));
        runtime.block_on(host::compile(cli))
    } else {
        // Help, version and usage errors as clap prints them.
        let _ = Cli::parse();
        host::config::services(std::env::args_os().collect())
            .and_then(|services| Ok((services, signals.install()?)))
            .and_then(|(services, control)| runtime.block_on(host::serve(services, control)))
    };
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

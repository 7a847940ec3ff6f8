//! Developer tasks, as `cargo xtask TASK` (an alias in `.cargo/config.toml`):
//!
//! - `build`: the plugins (`plugins/NAME.wasm`, Rust, Python and
//!   JavaScript), the test stubs (`target/stubs/NAME.wasm`) and the native
//!   binaries.
//! - `polyglot`: only the Python and JavaScript plugins, installing their
//!   pinned tools into `.tools/` first.
//! - `up`: builds, then runs the registry and the log, visit and gateway
//!   services on 127.0.0.1:20000-20003 until Ctrl-C.
//! - `test`: builds, makes sure a Chromium is there for the registry
//!   page's test (`browser`), then runs every test.
//!
//! Cargo alone cannot build for two targets in one command, nor start
//! processes in order; this is the small program that does.

mod browser;
mod build;
mod polyglot;
mod up;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Sparrow's developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Builds the plugins, the test stubs and the native binaries.
    Build {
        /// Build the native binaries with optimisations.
        #[arg(long)]
        release: bool,
    },
    /// Builds the Python and JavaScript plugins only, installing their
    /// pinned tools into `.tools/` when missing.
    Polyglot,
    /// Builds everything, then runs registry (20000), gateway (20001), log
    /// (20002) and visit (20003) on 127.0.0.1 until Ctrl-C.
    Up {
        /// Build the native binaries with optimisations.
        #[arg(long)]
        release: bool,
    },
    /// Builds everything, finds Chromium (installing it with apt-get when
    /// root and missing), then runs every test; further arguments go to
    /// `cargo test`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let workspace = build::Workspace::locate()?;
    match cli.task {
        Task::Build { release } => workspace.build_all(release),
        Task::Polyglot => polyglot::build_polyglot(&workspace),
        Task::Up { release } => {
            workspace.build_system(release)?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?
                .block_on(up::run(&workspace, release))
        }
        Task::Test { args } => {
            workspace.build_all(false)?;
            let chromium = browser::ensure()?;
            eprintln!("browser for the page test: {}", chromium.display());
            workspace.cargo(["test"].into_iter().chain(args.iter().map(String::as_str)))
        }
    }
}

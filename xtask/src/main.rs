//! Developer tasks, as `cargo xtask TASK` (an alias in `.cargo/config.toml`):
//!
//! - `build`: the plugins (`plugins/NAME.wasm`, Rust, Python and
//!   JavaScript), the test stubs (`target/stubs/NAME.wasm`) and the native
//!   binaries.
//! - `polyglot`: only the Python and JavaScript plugins, installing their
//!   pinned tools into `.tools/` first.
//! - `up`: builds, then runs the registry and the log, visit and gateway
//!   services on 127.0.0.1:20000-20003 until Ctrl-C; with `--etcd`, a local
//!   etcd and a second registry replica too; with `--one-host`, the three
//!   services in one host process.
//! - `test`: installs what the tests run when missing (etcd, strace, from
//!   Debian), builds, then runs every test.
//! - `new NAME --lang rust|python|js [--dir DIR]`: writes a service project
//!   of its own (by default next to the repository), which builds with its
//!   language's tools and package registry alone.
//! - `protoc`: prints the protoc that builds use.
//!
//! Cargo alone cannot build for two targets in one command, nor start
//! processes in order; this is the small program that does.

mod build;
mod debian;
mod etcd;
mod new;
mod polyglot;
mod protoc;
mod up;
mod workspace;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use workspace::Workspace;

#[derive(Parser)]
#[command(about = "Sparrow's developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Builds the plugins, the test stubs and the native binaries; with
    /// `--release`, also installs Go for the benchmark's seed baseline
    /// (apt-get, when root and missing).
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
        /// Keep the registry's table in a local etcd (127.0.0.1:20010, data
        /// in run/etcd) and run two registry replicas, 20000 and 20005.
        #[arg(long)]
        etcd: bool,
        /// Run gateway, log and visit in one host process (from the config
        /// file it writes, run/services.toml), calling each other in
        /// process, instead of a host process each.
        #[arg(long)]
        one_host: bool,
    },
    /// Builds everything, finds Chromium (installing it with apt-get when
    /// root and missing), then runs every test; further arguments go to
    /// `cargo test`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Writes a new service project, with its own copy of the WIT contract,
    /// a hello-world handler, a README that says how to build it and pinned
    /// tools; it builds outside this repository.
    New {
        /// The service name: lowercase letters, digits and hyphens.
        name: String,
        #[arg(long, value_enum)]
        lang: new::Lang,
        /// Where to write it: a new or empty directory [default: NAME next
        /// to this repository].
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Prints the path of the protoc that builds use (for scripts that run
    /// cargo themselves: `export PROTOC=$(cargo xtask protoc)`).
    Protoc,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let workspace = Workspace::locate()?;
    match cli.task {
        Task::Build { release } => {
            // A release build is what the benchmark runs; without Go it
            // still runs, and says that it skipped the seed.
            if release && let Err(e) = debian::ensure(debian::BENCH_TOOLS) {
                eprintln!("xtask: {e:#}; the benchmark will skip the seed");
            }
            build_all(&workspace, release)
        }
        Task::Polyglot => polyglot::build_polyglot(&workspace),
        Task::Up {
            release,
            etcd,
            one_host,
        } => {
            let etcd = etcd.then(etcd::ensure_installed).transpose()?;
            build::build_system(&workspace, release)?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?
                .block_on(up::run(&workspace, release, etcd.as_deref(), one_host))
        }
        Task::Protoc => {
            println!("{}", protoc::path()?.display());
            Ok(())
        }
        Task::New { name, lang, dir } => new::run(&workspace, &name, lang, dir),
        Task::Test { args } => {
            debian::ensure(debian::TEST_TOOLS)?;
            // The etcd tests run a real etcd cluster.
            let etcd = etcd::ensure_installed()?;
            build_all(&workspace, false)?;
            let mut test = workspace
                .cargo_command(["test"].into_iter().chain(args.iter().map(String::as_str)));
            test.env("SPARROW_ETCD", etcd);
            workspace::run(test)
        }
    }
}

/// Everything: the Rust plugins and the binaries, the Python and JavaScript
/// plugins, and the test stubs.
fn build_all(workspace: &Workspace, release: bool) -> anyhow::Result<()> {
    build::build_system(workspace, release)?;
    polyglot::build_polyglot(workspace)?;
    polyglot::install_bench_tools(workspace)?;
    build::build_stubs(workspace)
}

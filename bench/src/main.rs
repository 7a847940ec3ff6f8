//! `bench`: measures where Sparrow stands. It starts what it measures itself
//! (registry, hosts, a plain hyper baseline server, fake service instances)
//! on loopback, drives load with a hyper client, and prints one markdown
//! table whose figures are compared with a baseline measured in the same run
//! wherever one exists.
//!
//! ```text
//! bench [--case NAME]... [--quick] [--bin-dir target/release]
//!       [--plugins-dir plugins] [--stubs-dir target/stubs] [--seed FILE]
//! ```

mod baseline;
mod cases;
mod client;
mod load;
mod procs;
mod report;
mod rounds;
mod seed;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use harness::Artifacts;

use crate::cases::Case;

#[derive(Debug, Parser)]
#[command(about = "Benchmarks Sparrow's registry and host against baselines")]
struct Cli {
    /// Run only these cases (repeatable); all of them by default.
    #[arg(long = "case", value_enum)]
    cases: Vec<Case>,

    /// A smoke run: about one second per measurement, smaller populations.
    #[arg(long)]
    quick: bool,

    /// Where the `registry` and `host` binaries are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,

    /// Where the system's plugins (`log.wasm`, `visit.wasm`, `gateway.wasm`) are.
    #[arg(long, default_value = "plugins")]
    plugins_dir: PathBuf,

    /// Where the stub plugins (`echo.wasm`, `echo-v2.wasm`) are.
    #[arg(long, default_value = "target/stubs")]
    stubs_dir: PathBuf,

    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,

    /// The text the seed (the Go system Sparrow reimplements) is published
    /// in: `end-to-end` builds it with Go and compares with it; without
    /// it, those rows say so.
    #[arg(long, default_value = seed::DEFAULT_TEXT)]
    seed: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The baseline: a plain hyper server answering like the echo stub,
    /// or with `--next` forwarding to the next server of a chain.
    #[command(hide = true)]
    ServeBaseline {
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        #[arg(long)]
        next: Option<SocketAddr>,
    },
}

/// How long and how big each case runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--bin-dir`, `--plugins-dir` and `--stubs-dir`.
    pub artifacts: Artifacts,
    /// The bench binary itself, to start the baseline server as a child.
    pub self_exe: PathBuf,
    pub connections: usize,
    /// `--seed`.
    pub seed: PathBuf,
    /// Load before measuring (connections open, caches warm, JIT-free paths hot).
    pub warmup: Duration,
    /// One measurement window.
    pub measure: Duration,
    /// Fake instances swept by heartbeats.
    pub sweep_instances: usize,
    /// Fake dependents notified of one registration.
    pub dependents: usize,
    /// The registry's heartbeat interval in the registry case (shorter than
    /// the default 30 s, so that a sweep comes soon).
    pub heartbeat_interval: Duration,
    /// Repetitions of a start-up measurement (the median is reported).
    pub repeats: usize,
}

impl Settings {
    fn new(cli: &Cli) -> anyhow::Result<Self> {
        let quick = cli.quick;
        Ok(Settings {
            artifacts: Artifacts {
                bin_dir: cli.bin_dir.clone(),
                plugins_dir: cli.plugins_dir.clone(),
                stubs_dir: cli.stubs_dir.clone(),
            },
            self_exe: std::env::current_exe().context("locating the bench binary")?,
            connections: cli.connections,
            seed: cli.seed.clone(),
            warmup: Duration::from_millis(if quick { 300 } else { 2000 }),
            measure: Duration::from_millis(if quick { 1000 } else { 10_000 }),
            sweep_instances: if quick { 1000 } else { 10_000 },
            dependents: if quick { 100 } else { 1000 },
            heartbeat_interval: Duration::from_secs(if quick { 2 } else { 5 }),
            repeats: if quick { 1 } else { 3 },
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Two worker threads: the machine the figures are quoted for has two cores,
    // and the servers measured need CPU too.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if let Some(Command::ServeBaseline { addr, next }) = cli.command {
        return runtime.block_on(baseline::serve(addr, next));
    }
    let settings = Settings::new(&cli)?;
    let cases = if cli.cases.is_empty() {
        Case::ALL.to_vec()
    } else {
        cli.cases.clone()
    };
    procs::raise_fd_limit();
    let started = Instant::now();
    let mut rows = Vec::new();
    for &case in &cases {
        let name = case.to_possible_value().unwrap().get_name().to_owned();
        if case == Case::Memory && cases.contains(&Case::HostOverhead) {
            eprintln!("bench: {name} is sampled during host-overhead");
            continue;
        }
        eprintln!("bench: {name} ...");
        let case_started = Instant::now();
        match runtime.block_on(case.run(&settings, &cases)) {
            Ok(case_rows) => rows.extend(case_rows),
            Err(e) => {
                eprintln!("bench: {name} failed: {e:#}");
                rows.push(report::Row::failed(&name, &format!("{e:#}")));
            }
        }
        eprintln!("bench: {name} took {:.1?}", case_started.elapsed());
    }
    println!("{}", report::header(cli.quick, started.elapsed()));
    println!("{}", report::table(&rows));
    if rows.iter().any(|r| r.failed) {
        anyhow::bail!("some cases failed");
    }
    Ok(())
}

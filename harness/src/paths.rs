//! Where `cargo xtask build` puts what the tests and the benchmark run: the
//! native binaries in `target/PROFILE/`, the system's plugins in
//! `plugins/NAME.wasm`, the test stub plugins in `target/stubs/NAME.wasm`;
//! and where the machine's own tools are (etcd, Chromium, Go).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The three directories built artifacts are found in.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// The native binaries (`registry`, `host`).
    pub bin_dir: PathBuf,
    /// The system's plugins (`log.wasm`, `visit.wasm`, `gateway.wasm`, ...).
    pub plugins_dir: PathBuf,
    /// The stub plugins (`echo.wasm`, `echo-v2.wasm`, ...).
    pub stubs_dir: PathBuf,
}

impl Artifacts {
    /// The build the running test belongs to: cargo runs a test as
    /// `target/PROFILE/deps/NAME-HASH`, beside that build's binaries.
    pub fn of_this_test() -> Artifacts {
        let exe = std::env::current_exe().expect("the test's own path");
        let bin_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("a test binary lives in target/PROFILE/deps")
            .to_owned();
        let target = bin_dir
            .parent()
            .expect("a profile directory lives in target/");
        // This crate is one level below the workspace root.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("harness/ is in the workspace");
        Artifacts {
            stubs_dir: target.join("stubs"),
            plugins_dir: root.join("plugins"),
            bin_dir,
        }
    }

    /// A native binary of the workspace (`registry`, `host`).
    pub fn binary(&self, name: &str) -> anyhow::Result<PathBuf> {
        existing(self.bin_dir.join(name))
    }

    /// A plugin of the system (`log`, `visit`, `gateway`, `visit-py`, ...).
    pub fn plugin(&self, name: &str) -> anyhow::Result<PathBuf> {
        existing(self.plugins_dir.join(format!("{name}.wasm")))
    }

    /// A stub plugin (`echo`, `echo-v2`, `plain-echo`, `other-world`, ...).
    pub fn stub(&self, name: &str) -> anyhow::Result<PathBuf> {
        existing(self.stubs_dir.join(format!("{name}.wasm")))
    }
}

fn existing(path: PathBuf) -> anyhow::Result<PathBuf> {
    if !path.exists() {
        bail!(
            "{} is missing: `cargo xtask build` builds it (`--release` for \
             target/release), and `cargo xtask test` before running the tests",
            path.display()
        );
    }
    // Absolute, so that a child started in another directory finds it too.
    std::fs::canonicalize(&path).with_context(|| format!("resolving {}", path.display()))
}

/// A native binary of the running test's build; panics when it is missing.
pub fn binary(name: &str) -> PathBuf {
    or_panic(Artifacts::of_this_test().binary(name))
}

/// A plugin of the system; panics when it is missing.
pub fn plugin(name: &str) -> PathBuf {
    or_panic(Artifacts::of_this_test().plugin(name))
}

/// A stub plugin of the running test's build; panics when it is missing.
pub fn stub(name: &str) -> PathBuf {
    or_panic(Artifacts::of_this_test().stub(name))
}

fn or_panic(path: anyhow::Result<PathBuf>) -> PathBuf {
    path.unwrap_or_else(|e| panic!("{e:#}"))
}

/// Where `program` is on `PATH`, if anywhere.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_artifact_names_itself_and_the_command_that_builds_it() {
        let artifacts = Artifacts {
            bin_dir: "/nonexistent/bin".into(),
            plugins_dir: "/nonexistent/plugins".into(),
            stubs_dir: "/nonexistent/stubs".into(),
        };
        let error = artifacts.stub("echo").unwrap_err().to_string();
        assert!(error.contains("/nonexistent/stubs/echo.wasm"), "{error}");
        assert!(error.contains("cargo xtask build"), "{error}");
    }
}

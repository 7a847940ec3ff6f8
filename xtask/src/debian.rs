//! Debian packages the tests use (real tools, not crates): installed with
//! apt-get when missing, so that `cargo xtask test` works on a fresh
//! machine. Without root, a missing one is an error that says what to
//! install.

use std::path::PathBuf;
use std::process::Command;

use anyhow::bail;

use crate::workspace::run;

/// A program the tests run, and the Debian package that provides it.
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

/// etcd 3.4: a real cluster for the registry-on-etcd tests, and what
/// `cargo xtask up --etcd` runs.
pub const ETCD: Tool = Tool {
    program: "etcd",
    package: "etcd-server",
};

/// What the test suite needs besides the toolchain.
pub const TEST_TOOLS: &[Tool] = &[
    ETCD,
    // Watches a host's `syncfs` calls (the `--sync` test).
    Tool {
        program: "strace",
        package: "strace",
    },
    // Shows the registry's page in the page test, driven over DevTools
    // (which also honours SPARROW_CHROMIUM, e.g. for a Chrome elsewhere).
    Tool {
        program: "chromium",
        package: "chromium",
    },
];

/// Go, for the benchmark's baseline the seed (the Go system Sparrow
/// reimplements), which the benchmark builds from its text.
pub const BENCH_TOOLS: &[Tool] = &[Tool {
    program: "go",
    package: "golang-go",
}];

/// Installs the packages of `tools` whose program is not on PATH.
pub fn ensure(tools: &[Tool]) -> anyhow::Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|tool| on_path(tool.program).is_none())
        .map(|tool| tool.package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "missing Debian packages: {} (install them with apt-get, as root)",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {} with apt-get", missing.join(" "));
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    run(update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(install)
}

/// Where `program` is on `PATH`.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

//! Debian packages the tests use (real tools, not crates): installed with
//! apt-get when missing, so that `cargo xtask test` works on a fresh
//! machine. Without root, a missing one is an error that says what to
//! install.

use std::process::Command;

use anyhow::bail;

use crate::workspace::run;

/// A program the tests run, and the Debian package that provides it.
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

/// What the test suite needs besides the toolchain.
pub const TEST_TOOLS: &[Tool] = &[
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

/// Installs the packages of `tools` whose program is not on PATH.
pub fn ensure(tools: &[Tool]) -> anyhow::Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|tool| !on_path(tool.program))
        .map(|tool| tool.package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the tests need these Debian packages: {} (install them with apt-get, as root)",
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

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

//! The browser that the registry page's test drives (headless Chromium over
//! the DevTools protocol): found on this machine, or installed with apt when
//! we are root on a Debian machine without it, as CI is.
//!
//! The test finds the browser the same way (`SPARROW_CHROMIUM`, then the
//! usual names on `PATH`), so this only has to make sure one is there.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;

use crate::build::run;

/// Overrides the search: the path of a Chromium or Chrome binary.
pub const ENV: &str = "SPARROW_CHROMIUM";
/// The names Chromium and Chrome install as.
pub const NAMES: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];
/// Debian's package.
const PACKAGE: &str = "chromium";

/// The browser's path, installing it first when it is missing and we may.
pub fn ensure() -> anyhow::Result<PathBuf> {
    if let Some(found) = find() {
        return Ok(found);
    }
    if !nix::unistd::geteuid().is_root() || !on_path("apt-get") {
        bail!(
            "no Chromium found (looked at ${ENV} and for {} on PATH): the registry page's \
             test drives one. Install it (Debian: `apt-get install chromium`) or set {ENV}",
            NAMES.join(", ")
        );
    }
    eprintln!("installing {PACKAGE} with apt-get, for the registry page's test");
    let apt = |args: &[&str]| {
        let mut command = Command::new("apt-get");
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(command)
    };
    apt(&["update", "-q"])?;
    apt(&["install", "-y", "-q", "--no-install-recommends", PACKAGE])?;
    match find() {
        Some(found) => Ok(found),
        None => bail!("apt-get installed {PACKAGE}, yet no browser is on PATH"),
    }
}

fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    NAMES.iter().find_map(|name| which(name))
}

fn on_path(name: &str) -> bool {
    which(name).is_some()
}

fn which(name: &str) -> Option<PathBuf> {
    let path: OsString = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

//! Building with cargo: the Rust plugins and the test stubs for
//! `wasm32-wasip2`, the native binaries for the host. The Python and
//! JavaScript plugins are `polyglot`'s.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

use crate::workspace::{Workspace, run};

const WASM_TARGET: &str = "wasm32-wasip2";
/// The cargo profile plugins are built with (see the workspace Cargo.toml).
const PLUGIN_PROFILE: &str = "plugin";

/// The plugins of the system, by the name of their file in `plugins/`.
/// `hello-http` is the example of a standard `wasi:http/proxy` component.
pub const PLUGINS: [&str; 4] = ["log", "visit", "gateway", "hello-http"];

/// A stub plugin the tests load.
struct Stub {
    /// Its file name in `target/stubs/`, without `.wasm`.
    name: &'static str,
    package: &'static str,
    /// Build-time environment that makes this variant.
    env: &'static [(&'static str, &'static str)],
}

/// The echo stub is built in variants: two versions that answer `/version`
/// differently (hot-swap tests), one that requires `echo`, and one whose
/// `describe` never returns. The plain echo is the benchmark's plugin.
/// `fetches` sends HTTP itself (imports `wasi:http`); `http-faults` is the
/// `hello-http` example with routes that trap and spin; `contract-0-1-0` is
/// built for the first version of the contract.
const STUBS: [Stub; 9] = [
    Stub {
        name: "echo",
        package: "stub-echo",
        env: &[],
    },
    Stub {
        name: "echo-v2",
        package: "stub-echo",
        env: &[("STUB_VERSION", "v2")],
    },
    Stub {
        name: "echo-calls-echo",
        package: "stub-echo",
        env: &[("STUB_REQUIRES", "echo")],
    },
    Stub {
        name: "echo-sleeps-describing",
        package: "stub-echo",
        env: &[("STUB_DESCRIBE", "sleep")],
    },
    Stub {
        name: "plain-echo",
        package: "stub-plain-echo",
        env: &[],
    },
    Stub {
        name: "other-world",
        package: "stub-other-world",
        env: &[],
    },
    Stub {
        name: "fetches",
        package: "stub-fetches",
        env: &[],
    },
    Stub {
        name: "contract-0-1-0",
        package: "stub-contract-0-1-0",
        env: &[],
    },
    Stub {
        name: "http-faults",
        package: "plugin-hello-http",
        env: &[("STUB_FAULTS", "1")],
    },
];

/// What `up` runs: the Rust plugins and the native binaries, nothing that
/// needs tools from outside cargo.
pub fn build_system(workspace: &Workspace, release: bool) -> anyhow::Result<()> {
    build_plugins(workspace)?;
    let mut args = vec!["build", "--bins"];
    if release {
        args.push("--release");
    }
    workspace.cargo(args)
}

/// rustup installs the targets of `rust-toolchain.toml` only along with the
/// toolchain: where the toolchain was already there, the wasm target may
/// still be missing. Add it then, rather than fail the build.
fn ensure_wasm_target(workspace: &Workspace) -> anyhow::Result<()> {
    let output = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .current_dir(&workspace.root)
        .output()
        .context("cannot run rustc")?;
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() && Path::new(&libdir).is_dir() {
        return Ok(());
    }
    eprintln!("installing the {WASM_TARGET} target with rustup");
    let mut rustup = Command::new("rustup");
    rustup
        .args(["target", "add", WASM_TARGET])
        .current_dir(&workspace.root);
    run(rustup).with_context(|| {
        format!(
            "the {WASM_TARGET} target is missing; install it with `rustup target add {WASM_TARGET}`"
        )
    })
}

fn build_plugins(workspace: &Workspace) -> anyhow::Result<()> {
    ensure_wasm_target(workspace)?;
    // One cargo run per plugin: built together, the features of the SDK
    // would be unified, and one plugin's `std` would put the standard
    // library, and WASI, back into the lean ones.
    for plugin in PLUGINS {
        let to = workspace
            .root
            .join("plugins")
            .join(format!("{plugin}.wasm"));
        build_component(workspace, &format!("plugin-{plugin}"), &[], &to)?;
    }
    Ok(())
}

/// Builds the test stubs into `target/stubs/`. Variants of one stub differ
/// only in build-time environment, which cargo tracks: each build recompiles
/// just the stub crate.
pub fn build_stubs(workspace: &Workspace) -> anyhow::Result<()> {
    let out = workspace.target.join("stubs");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for Stub { name, package, env } in STUBS {
        build_component(workspace, package, env, &out.join(format!("{name}.wasm")))?;
    }
    Ok(())
}

/// Builds the plugin `package` alone, with `env` set, and copies its
/// component to `to`.
fn build_component(
    workspace: &Workspace,
    package: &str,
    env: &[(&str, &str)],
    to: &Path,
) -> anyhow::Result<()> {
    let mut command = workspace.cargo_command([
        "build",
        "--target",
        WASM_TARGET,
        "--profile",
        PLUGIN_PROFILE,
        "--package",
        package,
    ]);
    command.envs(env.iter().copied());
    run(command)?;
    copy_artifact(workspace, package, to)
}

fn copy_artifact(workspace: &Workspace, package: &str, to: &Path) -> anyhow::Result<()> {
    let from = workspace
        .target
        .join(WASM_TARGET)
        .join(PLUGIN_PROFILE)
        .join(format!("{}.wasm", package.replace('-', "_")));
    std::fs::copy(&from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

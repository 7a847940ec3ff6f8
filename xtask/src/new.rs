//! `cargo xtask new NAME --lang rust|python|js [--dir DIR]`: a service
//! project of its own, meant to live outside this repository.
//!
//! The project holds everything it builds from: a copy of `wit/`, the
//! templates of `xtask/templates/LANG/` (embedded in this program) with the
//! name filled in, and the tool pins this repository builds its own plugins
//! with, read from it at generation time (`rust-toolchain.toml`, the
//! workspace's `wit-bindgen`, `plugins/python/requirements.txt`,
//! `plugins/js/package.json` and its lockfile). A Rust project also gets a
//! copy of the SDK, `plugins/sdk`. Its README's first shell block is its
//! build command, which needs only the language's package registry.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::ValueEnum;

use crate::workspace::Workspace;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// One file of a template: where it goes in the project, and its text with
/// `{{placeholders}}`.
struct Template {
    to: &'static str,
    text: &'static str,
}

macro_rules! template {
    ($lang:literal, $from:literal => $to:literal) => {
        Template {
            to: $to,
            text: include_str!(concat!("../templates/", $lang, "/", $from)),
        }
    };
}

// Dotfiles are stored without their dot, so that they do not act on the
// template directory itself.
const RUST: &[Template] = &[
    template!("rust", "README.md" => "README.md"),
    template!("rust", "Cargo.toml" => "Cargo.toml"),
    template!("rust", "rust-toolchain.toml" => "rust-toolchain.toml"),
    template!("rust", "cargo-config.toml" => ".cargo/config.toml"),
    template!("rust", "gitignore" => ".gitignore"),
    template!("rust", "src/lib.rs" => "src/lib.rs"),
    template!("rust", "sdk-Cargo.toml" => "vendor/sparrow-plugin/Cargo.toml"),
];

const PYTHON: &[Template] = &[
    template!("python", "README.md" => "README.md"),
    template!("python", "app.py" => "app.py"),
    template!("python", "gitignore" => ".gitignore"),
];

const JS: &[Template] = &[
    template!("js", "README.md" => "README.md"),
    template!("js", "package.json" => "package.json"),
    template!("js", "app.js" => "app.js"),
    template!("js", "gitignore" => ".gitignore"),
];

/// Where the vendored SDK goes: two levels below the project, like
/// `plugins/sdk` in this repository, so that its `path: "../../wit"` names
/// the project's own `wit/`.
const VENDORED_SDK: &str = "vendor/sparrow-plugin";
const SDK_WIT_PATH: &str = r#"path: "../../wit""#;

pub fn run(
    workspace: &Workspace,
    name: &str,
    lang: Lang,
    dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    validate_name(name, lang)?;
    let dir = match dir {
        Some(dir) => dir,
        // Next to the repository, not in it.
        None => workspace
            .root
            .parent()
            .context("the repository has no parent directory: give --dir")?
            .join(name),
    };
    let files = project_files(workspace, name, lang)?;

    let created = prepare_dir(&dir)?;
    let written = files.iter().try_for_each(|(path, contents)| {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))
    });
    if let Err(e) = written {
        // Leave nothing half-made behind.
        if created {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Err(e);
    }

    let readme = &files
        .iter()
        .find(|(path, _)| path == Path::new("README.md"))
        .context("a template without README.md")?
        .1;
    let build = build_command(readme).context("the README has no shell block")?;
    let lang = lang
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    println!(
        "created {} (--lang {lang}): the service `{name}`",
        dir.display()
    );
    println!("build it (README.md says more):");
    println!("  cd {}", dir.display());
    for line in build.lines() {
        println!("  {line}");
    }
    Ok(())
}

/// The first ```sh block of a README.
fn build_command(readme: &str) -> Option<String> {
    let (_, rest) = readme.split_once("```sh\n")?;
    let (block, _) = rest.split_once("```")?;
    Some(block.to_owned())
}

/// Names become a service name (a path segment behind the gateway), a cargo
/// package and crate, an npm package: the rules that suit all of them.
fn validate_name(name: &str, lang: Lang) -> anyhow::Result<()> {
    const RULE: &str = "a service name is 1 to 63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen";
    let well_formed = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !well_formed {
        bail!("invalid service name {name:?}: {RULE}");
    }
    if lang == Lang::Rust {
        let crate_name = name.replace('-', "_");
        if RUST_RESERVED.contains(&crate_name.as_str()) {
            bail!(
                "invalid service name {name:?} for Rust: its crate would be called `{crate_name}`, which Rust reserves or the project uses"
            );
        }
    }
    Ok(())
}

/// Keywords (a crate cannot be named after one), the standard crates, and
/// the project's own dependency.
const RUST_RESERVED: &[&str] = &[
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "alloc",
    "core",
    "proc_macro",
    "std",
    "test",
    "sparrow_plugin",
    "wit_bindgen",
];

/// Creates `dir` unless it exists empty; refuses anything else. Tells
/// whether it was created.
fn prepare_dir(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} exists and is not empty: choose another --dir, or remove it first",
                    dir.display()
                );
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{} exists and is not a directory", dir.display())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// Every file of the project, by its path in the project.
fn project_files(
    workspace: &Workspace,
    name: &str,
    lang: Lang,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let root = &workspace.root;
    let mut values = vec![("name", name.to_owned())];
    let mut files = Vec::new();
    let templates = match lang {
        Lang::Rust => {
            values.push(("crate", name.replace('-', "_")));
            values.push(("rust_channel", rust_channel(root)?));
            values.push(("wit_bindgen", pinned_dependency(root, "wit-bindgen")?));
            values.push(("dlmalloc", pinned_dependency(root, "dlmalloc")?));
            let sdk = read(&root.join("plugins/sdk/src/lib.rs"))?;
            if !sdk.contains(SDK_WIT_PATH) {
                bail!(
                    "plugins/sdk/src/lib.rs no longer reads the WIT from {SDK_WIT_PATH}: update {VENDORED_SDK} in xtask/src/new.rs"
                );
            }
            files.push((Path::new(VENDORED_SDK).join("src/lib.rs"), sdk));
            // What the SDK brings a plugin without `std` (docs/plugins.md,
            // "Lean Rust plugins").
            files.push((
                Path::new(VENDORED_SDK).join("src/bare.rs"),
                read(&root.join("plugins/sdk/src/bare.rs"))?,
            ));
            RUST
        }
        Lang::Python => {
            files.push((
                PathBuf::from("requirements.txt"),
                read(&root.join("plugins/python/requirements.txt"))?,
            ));
            PYTHON
        }
        Lang::Js => {
            let manifest = root.join("plugins/js/package.json");
            let pins: serde_json::Value = serde_json::from_str(&read(&manifest)?)
                .with_context(|| format!("parsing {}", manifest.display()))?;
            for (key, section, package) in [
                ("jco", "dependencies", "@bytecodealliance/jco"),
                (
                    "componentize_js",
                    "dependencies",
                    "@bytecodealliance/componentize-js",
                ),
                (
                    "preview2_shim",
                    "overrides",
                    "@bytecodealliance/preview2-shim",
                ),
            ] {
                let version = pins[section][package].as_str().with_context(|| {
                    format!(
                        "{} has no {section} entry for {package}",
                        manifest.display()
                    )
                })?;
                values.push((key, version.to_owned()));
            }
            files.push((PathBuf::from("package-lock.json"), js_lockfile(root, name)?));
            JS
        }
    };
    for template in templates {
        files.push((PathBuf::from(template.to), fill(template, &values)?));
    }
    for (path, contents) in wit_files(&root.join("wit"))? {
        files.push((Path::new("wit").join(path), contents));
    }
    Ok(files)
}

/// The template's text with every `{{key}}` replaced by its value.
fn fill(template: &Template, values: &[(&str, String)]) -> anyhow::Result<String> {
    let mut text = template.text.to_owned();
    for (key, value) in values {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    if let Some(at) = text.find("{{") {
        let rest = &text[at..];
        let placeholder = &rest[..rest.find("}}").map_or(rest.len(), |end| end + 2)];
        bail!(
            "the template of {} has an unknown placeholder {placeholder}",
            template.to
        );
    }
    Ok(text)
}

/// Every file under `wit/`, by its path below it.
fn wit_files(dir: &Path) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let path = dir.join(&relative);
        let entries =
            std::fs::read_dir(&path).with_context(|| format!("listing {}", path.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", path.display()))?;
            let relative = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                pending.push(relative);
            } else {
                files.push((relative, read(&entry.path())?));
            }
        }
    }
    if files.is_empty() {
        bail!("{} holds no file", dir.display());
    }
    files.sort();
    Ok(files)
}

/// The compiler this repository pins: `channel` of `rust-toolchain.toml`.
fn rust_channel(root: &Path) -> anyhow::Result<String> {
    let path = root.join("rust-toolchain.toml");
    let text = read(&path)?;
    text.lines()
        .find_map(|line| toml_string(line, "channel"))
        .with_context(|| format!("no channel in {}", path.display()))
}

/// The workspace's dependency line for `crate_name`, with its version
/// pinned to the one in `Cargo.lock`: what the SDK is built with here.
fn pinned_dependency(root: &Path, crate_name: &str) -> anyhow::Result<String> {
    let manifest = read(&root.join("Cargo.toml"))?;
    let line = manifest
        .lines()
        .find(|line| line.starts_with(&format!("{crate_name} =")))
        .with_context(|| format!("no {crate_name} in the workspace's Cargo.toml"))?;
    let (_, after) = line
        .split_once("version = \"")
        .with_context(|| format!("the workspace's {crate_name} has no version"))?;
    let (requirement, _) = after.split_once('"').context("an unterminated version")?;

    let lock = read(&root.join("Cargo.lock"))?;
    let locked = lock
        .split("[[package]]")
        .filter(|package| {
            package
                .lines()
                .any(|line| toml_string(line, "name").as_deref() == Some(crate_name))
        })
        .filter_map(|package| {
            package
                .lines()
                .find_map(|line| toml_string(line, "version"))
        })
        .find(|version| version == requirement || version.starts_with(&format!("{requirement}.")))
        .with_context(|| format!("no {crate_name} {requirement} in Cargo.lock"))?;
    Ok(line.replacen(
        &format!("version = \"{requirement}\""),
        &format!("version = \"={locked}\""),
        1,
    ))
}

/// `value` of a TOML line `key = "value"`.
fn toml_string(line: &str, key: &str) -> Option<String> {
    let (k, v) = line.split_once('=')?;
    (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
}

/// The lockfile this repository installs its JavaScript tools from, as the
/// project's: every transitive dependency pinned, under the project's name.
fn js_lockfile(root: &Path, name: &str) -> anyhow::Result<String> {
    let path = root.join("plugins/js/package-lock.json");
    let lock = read(&path)?;
    let mut parsed: serde_json::Value =
        serde_json::from_str(&lock).with_context(|| format!("parsing {}", path.display()))?;
    let old = parsed["name"]
        .as_str()
        .with_context(|| format!("no name in {}", path.display()))?
        .to_owned();
    // Rename in the text rather than rewrite the JSON, which would reorder
    // it: the name is at the top and in the root package's entry.
    let quoted = |name: &str| format!("\"name\": \"{name}\"");
    let renamed = lock.replace(&quoted(&old), &quoted(name));
    parsed["name"] = name.into();
    parsed["packages"][""]["name"] = name.into();
    let check: serde_json::Value = serde_json::from_str(&renamed)?;
    if check != parsed {
        bail!("cannot rename the package in {}", path.display());
    }
    Ok(renamed)
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

//! The seed: the Go system Sparrow reimplements (a registry, and gateway,
//! log and visit services, four processes), built from the text it is
//! published in and run side by side with Sparrow, so that the end-to-end
//! targets stated against it ("three times the seed's requests/s") are
//! measured in the same run rather than against a figure from another day.
//!
//! Its Go files are cut out of the text as written. Two things change, and
//! only these: its four fixed addresses (`127.0.0.1:20000` to `:20003`)
//! become free loopback ports, and its one `errors.Join` (Go 1.20) becomes
//! an equivalent that Debian's Go 1.19 (`golang-go`, which `cargo xtask
//! build --release` installs) compiles. Nothing of it is kept in this repository: the
//! text is read from `--seed`, and without it (or without Go) the seed's
//! rows say why they were skipped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use harness::TempDir;

/// Where the seed's text is in this workplace, next to the repository.
pub const DEFAULT_TEXT: &str = "../shared/seed/000_720b409b63e6d7ca.txt";

/// The addresses the seed's code has fixed, in the order of `PROGRAMS`.
const FIXED_ADDRS: [&str; 4] = [
    "127.0.0.1:20000",
    "127.0.0.1:20001",
    "127.0.0.1:20002",
    "127.0.0.1:20003",
];

/// Its programs in the order they start (the text's own order: the
/// registry, then the services that call it, the gateway last), each with
/// the index of its fixed address.
const PROGRAMS: [(&str, usize); 4] = [("registry", 0), ("log", 2), ("visit", 3), ("gateway", 1)];

/// How long one program may take to listen, and the gateway to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The path the seed's gateway serves visit on: the service is registered
/// as `visist`, spelled as in the seed.
pub const VISIT_PATH: &str = "/visist/";

/// The four seed processes, running until dropped.
pub struct Seed {
    /// Each with its stdin held open: a seed service stops when it reads
    /// anything, end of input included.
    children: Vec<(Child, ChildStdin)>,
    pub gateway: SocketAddr,
    /// Its sources, programs and log file.
    dir: TempDir,
}

impl Seed {
    /// Builds the seed from `text` with Go and starts its programs, each
    /// once the one before listens. The gateway answers `GET /visist/`
    /// only after the registry's notifications reach it: the caller waits
    /// for that.
    pub fn start(text: &Path) -> anyhow::Result<Seed> {
        let go = go().context(
            "no Go compiler (Debian: golang-go, which `cargo xtask build --release` installs as root)",
        )?;
        let text = std::fs::read_to_string(text)
            .with_context(|| format!("reading the seed's text {}", text.display()))?;
        let dir = TempDir::try_new("seed")?;
        // All four held at once, so that no two are the same port.
        let held: Vec<TcpListener> = (0..FIXED_ADDRS.len())
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()?;
        let addrs: Vec<SocketAddr> = held
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<_, _>>()?;
        drop(held);
        write_sources(&text, &dir.path().join("src"), &addrs)?;
        build(&go, dir.path())?;

        let mut seed = Seed {
            children: Vec::new(),
            gateway: addrs[1],
            dir,
        };
        for (program, addr) in PROGRAMS {
            let binary = seed.dir.path().join("bin").join(program);
            let mut child = Command::new(&binary)
                // The log service writes `./services.log`.
                .current_dir(seed.dir.path())
                .stdin(Stdio::piped())
                // Visit prints a line per request: nobody would read a pipe.
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting the seed's {program}"))?;
            let stdin = child.stdin.take().expect("stdin is piped");
            seed.children.push((child, stdin));
            listening(program, addrs[addr])?;
        }
        Ok(seed)
    }

    /// The process ids of its four programs.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|(child, _)| child.id()).collect()
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        for (child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `go` on PATH, or Debian's versioned install.
fn go() -> Option<PathBuf> {
    harness::on_path("go").or_else(|| {
        std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("go-"))
            .map(|entry| entry.path().join("bin/go"))
            .find(|candidate| candidate.is_file())
    })
}

/// One Go file of the text: its package and its source.
#[derive(Debug, PartialEq)]
struct GoFile {
    package: String,
    source: String,
}

/// The Go files of the text, in order. In it, each file starts at its
/// `package` line and runs until the next heading: a bullet line (`  • `)
/// or a line of prose, which starts with a character that is not ASCII.
fn go_files(text: &str) -> Vec<GoFile> {
    let mut files: Vec<GoFile> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        if let Some(package) = line.strip_prefix("package ") {
            files.push(GoFile {
                package: package.trim().to_owned(),
                source: String::new(),
            });
            open = true;
        } else if line.starts_with("  • ") || line.chars().next().is_some_and(|c| !c.is_ascii()) {
            open = false;
            continue;
        }
        if open && let Some(file) = files.last_mut() {
            file.source.push_str(line);
            file.source.push('\n');
        }
    }
    files
}

/// Where a file goes in the module `services`: a library under its
/// package's name, a `main` under `cmd/` named by the service it runs.
fn file_dir(file: &GoFile) -> anyhow::Result<String> {
    if file.package != "main" {
        return Ok(file.package.clone());
    }
    let program = if file.source.contains("\"services/gatewayservice\"") {
        "gateway"
    } else if file.source.contains("\"services/visistservice\"") {
        "visit"
    } else if file.source.contains("\"services/logservice\"") {
        "log"
    } else if file.source.contains("registry.Default()") {
        "registry"
    } else {
        bail!("a main package of the seed that runs none of its four programs");
    };
    Ok(format!("cmd/{program}"))
}

/// Writes the module to `src`, with `addrs` in place of the fixed ones.
fn write_sources(text: &str, src: &Path, addrs: &[SocketAddr]) -> anyhow::Result<()> {
    let files = go_files(text);
    if files.len() < PROGRAMS.len() {
        bail!(
            "the seed's text holds {} Go files, not a whole system",
            files.len()
        );
    }
    std::fs::create_dir_all(src)?;
    std::fs::write(src.join("go.mod"), "module services\n\ngo 1.19\n")?;
    for (n, file) in files.iter().enumerate() {
        let dir = src.join(file_dir(file)?);
        std::fs::create_dir_all(&dir)?;
        let mut source = file.source.clone();
        for (fixed, addr) in FIXED_ADDRS.iter().zip(addrs) {
            source = source.replace(fixed, &addr.to_string());
        }
        std::fs::write(dir.join(format!("seed{n}.go")), without_errors_join(source))?;
    }
    Ok(())
}

/// `source` with `errors.Join(a, b)` (Go 1.20) replaced by a function of
/// the same meaning, and the `errors` import dropped if nothing else uses
/// it.
fn without_errors_join(source: String) -> String {
    if !source.contains("errors.Join(") {
        return source;
    }
    let mut source = source.replace("errors.Join(", "joinErrors(");
    if !source.contains("errors.") {
        source = source.replace("\t\"errors\"\n", "");
    }
    source.push_str(
        "
// joinErrors stands for errors.Join, which Go 1.19 lacks.
func joinErrors(a, b error) error {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return fmt.Errorf(\"%v\\n%v\", a, b)
}
",
    );
    source
}

/// `go build` of the four programs into `dir/bin`.
fn build(go: &Path, dir: &Path) -> anyhow::Result<()> {
    // `-o` takes several programs only into a directory that exists.
    std::fs::create_dir_all(dir.join("bin"))?;
    let output = Command::new(go)
        .current_dir(dir.join("src"))
        .args(["build", "-o"])
        .arg(dir.join("bin"))
        .arg("./cmd/...")
        .env("GOCACHE", dir.join("go-cache"))
        .env("GOFLAGS", "-mod=mod")
        .env("GO111MODULE", "on")
        .output()
        .with_context(|| format!("running {}", go.display()))?;
    if !output.status.success() {
        bail!(
            "building the seed failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Waits until `program` accepts connections on `addr`.
fn listening(program: &str, addr: SocketAddr) -> anyhow::Result<()> {
    let connects = || TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok();
    if !harness::poll_until(START_TIMEOUT, connects) {
        bail!("the seed's {program} did not listen on {addr} within {START_TIMEOUT:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
Prose before the code.

  • 服务信息
package registry

import \"fmt\"

func A() {
\tfmt.Println(\"127.0.0.1:20000\")
}
  • 服务入口
package main

func main() {
\tregistry.Default()
}

基础服务模块

package service
";

    #[test]
    fn the_go_files_are_cut_at_each_heading() {
        let files = go_files(TEXT);
        assert_eq!(
            files.iter().map(|f| f.package.as_str()).collect::<Vec<_>>(),
            ["registry", "main", "service"]
        );
        assert!(
            files[0]
                .source
                .ends_with("\tfmt.Println(\"127.0.0.1:20000\")\n}\n")
        );
        assert!(!files[1].source.contains("基础"));
        assert_eq!(file_dir(&files[1]).unwrap(), "cmd/registry");
    }

    #[test]
    fn errors_join_is_replaced_and_its_import_dropped() {
        let source = "import (\n\t\"errors\"\n\t\"fmt\"\n)\nx = errors.Join(a, b)\n".to_owned();
        let fixed = without_errors_join(source);
        assert!(!fixed.contains("\"errors\""));
        assert!(fixed.contains("x = joinErrors(a, b)"));
        assert!(fixed.contains("func joinErrors(a, b error) error"));
    }
}

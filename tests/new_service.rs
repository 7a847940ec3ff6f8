//! `cargo xtask new` writes a service project that builds outside the
//! repository: for each language, a project is generated into a temporary
//! directory outside the repository, moved, built with the first shell block
//! of its own README, and run in a host behind the gateway, where it answers
//! the same directly and through the gateway.
//!
//! The builds use the package registries (crates.io, PyPI, npm) like a user
//! would; their caches make reruns fast. The Rust build shares a target
//! directory under the repository's `target/`, so that its dependencies are
//! compiled once.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use harness::{Proc, binary, get, plugin, poll_until, registered, send};

const SETTLE: Duration = Duration::from_secs(30);
/// A first build downloads and compiles its tools; later ones find them in
/// the registries' caches.
const BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Builds keep both cores busy, and the Python and JavaScript components
/// take seconds to compile in the host: one language at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The repository's target directory (`target/`, or `CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    let host = binary("host");
    host.parent().unwrap().parent().unwrap().to_owned()
}

/// A fresh directory under the system's temporary directory, outside the
/// repository, removed when dropped.
struct Outside(PathBuf);

impl Outside {
    fn new(label: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "sparrow-new-service-{label}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        let path = path.canonicalize().unwrap();
        assert!(
            !path.starts_with(repo_root().canonicalize().unwrap()),
            "{} is inside the repository",
            path.display()
        );
        Outside(path)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `command`, with its output collected, for at most `timeout`.
fn run(mut command: Command, timeout: Duration) -> Output {
    let described = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {described}: {e}"));
    let readers = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .map(|stream| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_end(&mut bytes);
            }
            bytes
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{described} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let [stdout, stderr] = readers.map(|reader| reader.join().unwrap());
    Output {
        status,
        stdout,
        stderr,
    }
}

fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `cargo xtask new ARGS`, run as the xtask binary that `cargo xtask`
/// built.
fn xtask_new(args: &[&str]) -> Output {
    let mut command = Command::new(binary("xtask"));
    command.arg("new").args(args);
    run(command, Duration::from_secs(60))
}

/// The first ```sh block of a README, and the first `.wasm` path in
/// backquotes after it: the build command and where its output goes.
fn build_instructions(readme: &str) -> (String, String) {
    let (_, rest) = readme.split_once("```sh\n").expect("a shell block");
    let (block, rest) = rest.split_once("```").expect("the end of the block");
    let output = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .find(|quoted| quoted.ends_with(".wasm"))
        .expect("the README names the component it builds");
    (block.to_owned(), output.to_owned())
}

/// Every file under `dir`, by path.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files
}

/// Runs the build command the way a user's shell would: none of the
/// variables cargo and rustup set for this test, so that the project's own
/// `rust-toolchain.toml` and `.cargo/config.toml` decide.
fn build(project: &Path, block: &str, envs: &[(&str, &Path)]) {
    let mut command = Command::new("sh");
    command.args(["-e", "-x", "-c", block]).current_dir(project);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let from_cargo = key.starts_with("CARGO") && key != "CARGO_HOME";
        let from_rustup = key == "RUSTUP_TOOLCHAIN";
        let compiler = key.starts_with("RUSTC") || key == "RUSTDOC" || key == "RUSTFLAGS";
        if from_cargo || from_rustup || compiler {
            command.env_remove(key.as_ref());
        }
    }
    command.envs(envs.iter().copied());
    let started = Instant::now();
    let output = run(command, BUILD_TIMEOUT);
    assert!(
        output.status.success(),
        "building with the README's command failed: {}",
        describe(&output)
    );
    eprintln!("built {} in {:?}", project.display(), started.elapsed());
}

/// Generates `name` in `lang` outside the repository, moves it, builds it as
/// its README says, and checks that it answers `GET /hello/bob` the same
/// directly and through a gateway.
fn a_new_project_builds_outside_and_routes_the_same_both_ways(lang: &str, name: &str) {
    let _serial = one_at_a_time();
    let outside = Outside::new(lang);
    let generated = outside.0.join("generated");
    let output = xtask_new(&[name, "--lang", lang, "--dir", generated.to_str().unwrap()]);
    assert!(output.status.success(), "{}", describe(&output));

    // Nothing in the project leads back to the repository.
    let root = repo_root().canonicalize().unwrap();
    for file in files_under(&generated) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains(root.to_str().unwrap()),
            "{} names the repository",
            file.display()
        );
    }
    // And it does not need to stay where it was made.
    let project = outside.0.join("moved").join(name);
    std::fs::create_dir_all(project.parent().unwrap()).unwrap();
    std::fs::rename(&generated, &project).unwrap();

    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    let (block, output) = build_instructions(&readme);
    // The Rust build shares its target directory between runs, so that
    // wit-bindgen and its dependencies are compiled once.
    let shared_target = target_dir().join("new-service");
    let component = match output.strip_prefix("target/") {
        Some(below) => {
            build(&project, &block, &[("CARGO_TARGET_DIR", &shared_target)]);
            shared_target.join(below)
        }
        None => {
            build(&project, &block, &[]);
            project.join(output)
        }
    };
    assert!(component.is_file(), "{} was not built", component.display());

    let registry = Proc::registry(&[]);
    let gateway = Proc::host(&plugin("gateway"), &registry, &[]);
    // Python and JavaScript builds differ each time (the interpreter's
    // snapshot): nothing to keep in the host's cache of compiled plugins.
    let service = Proc::host(&component, &registry, &["--no-cache"]);
    assert!(poll_until(SETTLE, || registered(&registry, name).len() == 1));
    let through_gateway = |path: &str| gateway.url(&format!("/{name}{path}"));
    // The gateway learns of the service from the registry's notification.
    assert!(
        poll_until(SETTLE, || get(&through_gateway("/hello/bob")).status == 200),
        "{}",
        service.log()
    );

    let expected = format!("Hello, bob! This is {name}.\n");
    for url in [service.url("/hello/bob"), through_gateway("/hello/bob")] {
        let reply = get(&url);
        assert_eq!(
            (reply.status, reply.text()),
            (200, expected.clone()),
            "{url}"
        );
    }
    // A query is not part of the route.
    let reply = get(&through_gateway("/hello/bob?from=test"));
    assert_eq!((reply.status, reply.text()), (200, expected.clone()));
    // Other routes and methods answer the same both ways too.
    for (method, path, status) in [
        ("GET", "/", 404),
        ("GET", "/nope", 404),
        ("GET", "/hello/", 404),
        ("POST", "/hello/bob", 405),
    ] {
        let direct = send(method, &service.url(path), &[], b"").unwrap();
        let gatewayed = send(method, &through_gateway(path), &[], b"").unwrap();
        assert_eq!(direct.status, status, "{method} {path}: {}", direct.text());
        assert_eq!(
            (gatewayed.status, gatewayed.text()),
            (direct.status, direct.text()),
            "{method} {path}"
        );
    }
}

#[test]
fn a_new_rust_service_builds_outside_the_repository_and_routes_the_same_both_ways() {
    a_new_project_builds_outside_and_routes_the_same_both_ways("rust", "greeter-rs");
}

#[test]
fn a_new_python_service_builds_outside_the_repository_and_routes_the_same_both_ways() {
    a_new_project_builds_outside_and_routes_the_same_both_ways("python", "greeter-py");
}

#[test]
fn a_new_javascript_service_builds_outside_the_repository_and_routes_the_same_both_ways() {
    a_new_project_builds_outside_and_routes_the_same_both_ways("js", "greeter-js");
}

#[test]
fn new_refuses_a_bad_name_and_a_directory_that_is_not_empty() {
    let outside = Outside::new("refusals");
    for bad in [
        "", "Greeter", "1greeter", "greeter-", "gree ter", "gr/eeter", "../x",
    ] {
        let dir = outside.0.join("bad");
        let output = xtask_new(&[bad, "--lang", "python", "--dir", dir.to_str().unwrap()]);
        assert!(!output.status.success(), "{bad:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("invalid service name"), "{bad:?}: {stderr}");
        assert!(!dir.exists(), "{bad:?} left {}", dir.display());
    }
    // Rust cannot name a crate after a keyword.
    let output = xtask_new(&[
        "fn",
        "--lang",
        "rust",
        "--dir",
        outside.0.join("fn").to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid service name"));

    let taken = outside.0.join("taken");
    std::fs::create_dir_all(&taken).unwrap();
    std::fs::write(taken.join("mine.txt"), "keep me").unwrap();
    let output = xtask_new(&["greeter", "--lang", "js", "--dir", taken.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(files_under(&taken), [taken.join("mine.txt")]);

    // An existing empty directory is fine.
    let empty = outside.0.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let output = xtask_new(&["greeter", "--lang", "js", "--dir", empty.to_str().unwrap()]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(empty.join("wit/service.wit").is_file());
}

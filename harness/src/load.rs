//! Load for the fault tests: a few client threads send the same request in
//! a loop until told to stop, and every answer that is not a 200 (or no
//! answer at all) is kept, with when it happened, so that a test can count
//! failures and say which ones.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::send;

/// No load runs longer than this, whatever the test does.
const MAX_RUN: Duration = Duration::from_secs(120);

/// One failed request.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Since the load started.
    pub at: Duration,
    /// The status, or `None` when no answer came.
    pub status: Option<u16>,
    pub text: String,
}

/// Clients sending `GET url` in a loop.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<Failure>>>,
    clients: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Load {
    pub fn start(url: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let clients = (0..clients)
            .map(|_| {
                let (url, stop, ok, failures) =
                    (url.to_owned(), stop.clone(), ok.clone(), failures.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_RUN {
                        match send("GET", &url, &[], b"") {
                            Ok(reply) if reply.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(reply) => failures.lock().unwrap().push(Failure {
                                at: started.elapsed(),
                                status: Some(reply.status),
                                text: reply.text(),
                            }),
                            Err(e) => failures.lock().unwrap().push(Failure {
                                at: started.elapsed(),
                                status: None,
                                text: format!("{e:#}"),
                            }),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            clients,
            started,
        }
    }

    /// Requests answered 200 so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `more` further requests were answered 200.
    pub fn wait_for_more(&self, more: usize, timeout: Duration) -> bool {
        let target = self.ok() + more;
        crate::poll_until(timeout, || self.ok() >= target)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the clients; what answered 200 and what failed.
    pub fn stop(self) -> (usize, Vec<Failure>) {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.join().expect("a load client panicked");
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

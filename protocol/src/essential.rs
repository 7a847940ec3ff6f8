//! Background tasks a server cannot do without, watched.
//!
//! Each such task loops for the server's whole life: a registry replica's
//! watch of etcd, its registration committer, its bid for leadership. One
//! that ended (a panic, a bug) would leave the server up but broken: a
//! replica answering reads from a copy that no longer follows etcd, every
//! write answered 503, or leading with no heartbeat sweeps. Crash-only is
//! the sounder answer: the server stops with an error that names the task,
//! its supervisor (systemd, Kubernetes) starts it again, and its clients
//! turn to the other replicas meanwhile.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinError, JoinSet};

/// The essential tasks of one server. Dropping it aborts them.
#[derive(Default)]
pub struct Essential {
    tasks: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

/// An essential task ended.
#[derive(Debug, thiserror::Error)]
#[error("the {name} task ended ({why}); the server cannot serve correctly without it")]
pub struct Ended {
    pub name: &'static str,
    pub why: String,
}

impl Ended {
    /// The end of the task `name`, from what joining it gave.
    pub fn of(name: &'static str, joined: Result<(), JoinError>) -> Ended {
        let why = match joined {
            Ok(()) => "it returned".to_owned(),
            Err(e) => failure(e),
        };
        Ended { name, why }
    }
}

impl Essential {
    pub fn new() -> Self {
        Essential::default()
    }

    /// Runs `task`, which must not end while the server runs.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let id = self.tasks.spawn(task).id();
        self.names.insert(id, name);
    }

    /// Completes when one of the tasks ends, naming it and saying why (its
    /// panic message); never while they all run.
    pub async fn ended(&mut self) -> Ended {
        let (id, result) = match self.tasks.join_next_with_id().await {
            None => return std::future::pending().await,
            Some(Ok((id, ()))) => (id, Ok(())),
            Some(Err(e)) => (e.id(), Err(e)),
        };
        Ended::of(self.names.get(&id).copied().unwrap_or("background"), result)
    }

    /// Aborts every task and waits until they are gone: what holds their
    /// state (a lease, a connection) can then be let go of safely.
    pub async fn shutdown(&mut self) {
        self.tasks.shutdown().await;
    }
}

fn failure(e: JoinError) -> String {
    if !e.is_panic() {
        return "cancelled".to_owned();
    }
    let payload = e.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    format!("panicked: {message}")
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Whether `ended` is still pending after every task had its turn.
    async fn still_running(essential: &mut Essential) -> bool {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
        let ended = pin!(essential.ended());
        ended
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    }

    #[tokio::test]
    async fn a_task_that_panics_is_named_with_its_message() {
        let mut essential = Essential::new();
        essential.spawn("forever", std::future::pending());
        let (go, gate) = tokio::sync::oneshot::channel::<()>();
        essential.spawn("committer", async move {
            let _ = gate.await;
            panic!("the copy went backwards");
        });
        assert!(still_running(&mut essential).await);
        go.send(()).unwrap();
        let ended = essential.ended().await;
        assert_eq!(ended.name, "committer");
        assert_eq!(ended.why, "panicked: the copy went backwards");
        assert_eq!(
            ended.to_string(),
            "the committer task ended (panicked: the copy went backwards); the server cannot \
             serve correctly without it"
        );
    }

    #[tokio::test]
    async fn a_task_that_returns_has_ended_too() {
        let mut essential = Essential::new();
        essential.spawn("forever", std::future::pending());
        essential.spawn("follower", async {});
        let ended = essential.ended().await;
        assert_eq!(
            (ended.name, ended.why.as_str()),
            ("follower", "it returned")
        );
    }

    #[tokio::test]
    async fn nothing_ends_while_the_tasks_run_and_shutdown_stops_them() {
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let mut essential = Essential::new();
        let flag = Flag(dropped.clone());
        essential.spawn("forever", async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        assert!(still_running(&mut essential).await);
        assert!(!dropped.load(Ordering::SeqCst));
        essential.shutdown().await;
        assert!(dropped.load(Ordering::SeqCst));
        // With no task left, nothing can end.
        assert!(matches!(
            pin!(essential.ended()).poll(&mut Context::from_waker(Waker::noop())),
            Poll::Pending
        ));
    }
}

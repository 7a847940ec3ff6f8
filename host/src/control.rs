//! What tells a running host to stop or to load its plugin again: the
//! process's signals in the binary, a test's own [`Controller`] in process.
//!
//! The binary holds (blocks) SIGINT, SIGTERM and SIGHUP as its very first
//! step, and lets them through only once their handlers exist, so a signal
//! sent the moment the process starts is acted on, never met by the default
//! action that kills the process.

use nix::sys::signal::{SigSet, Signal};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

/// The receiving side, given to [`crate::serve`].
pub struct Control {
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) reload: mpsc::UnboundedReceiver<()>,
}

/// The sending side: stop the host, or have it load its plugin file again.
#[derive(Clone)]
pub struct Controller {
    stop: watch::Sender<bool>,
    reload: mpsc::UnboundedSender<()>,
}

impl Controller {
    /// Deregister, drain and return (SIGINT, SIGTERM).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Load the plugin file again (SIGHUP).
    pub fn reload(&self) {
        let _ = self.reload.send(());
    }
}

/// A connected pair.
pub fn control() -> (Controller, Control) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (reload_tx, reload_rx) = mpsc::unbounded_channel();
    (
        Controller {
            stop: stop_tx,
            reload: reload_tx,
        },
        Control {
            stop: stop_rx,
            reload: reload_rx,
        },
    )
}

impl Control {
    /// Completes once the host is told to stop.
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + use<> {
        let mut stop = self.stop.clone();
        async move {
            let _ = stop.wait_for(|stop| *stop).await;
        }
    }
}

const HELD: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The process's stop and reload signals, held until [`Signals::install`].
pub struct Signals(SigSet);

impl Signals {
    /// Blocks the signals on this thread, and so on every thread started
    /// from it: call it first thing in `main`.
    pub fn hold() -> anyhow::Result<Self> {
        let set: SigSet = HELD.into_iter().collect();
        set.thread_block()?;
        Ok(Signals(set))
    }

    /// Installs the handlers, then lets the signals through on this thread
    /// (the one that runs the runtime's `block_on`): one that came in the
    /// meantime is delivered now. Must run inside the runtime.
    pub fn install(self) -> anyhow::Result<Control> {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        self.0.thread_unblock()?;
        let (controller, control) = control();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {
                        tracing::info!("SIGINT received");
                        controller.stop();
                    }
                    _ = terminate.recv() => {
                        tracing::info!("SIGTERM received");
                        controller.stop();
                    }
                    _ = hangup.recv() => controller.reload(),
                }
            }
        });
        Ok(control)
    }
}

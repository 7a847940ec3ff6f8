//! What tells a running host to stop or to load its plugin again: the
//! process's signals in the binary, a test's own [`Controller`] in process.
//!
//! The binary blocks SIGINT, SIGTERM and SIGHUP as its very first step (an
//! ELF constructor, before `main`), in every thread it will ever start, and
//! one thread takes them with `sigwait`. So a signal sent the moment the
//! process starts is held until that thread takes it, never met by the
//! default action that would kill the process, and no signal handler ever
//! interrupts the host's own code.

use nix::sys::signal::{SigSet, Signal};
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

impl Control {
    /// `n` controls told whatever this one is told (a stop, a reload), one
    /// per service of the process, with their controllers.
    pub(crate) fn fan_out(self, n: usize) -> (Vec<Controller>, Vec<Control>) {
        let (controllers, controls): (Vec<Controller>, Vec<Control>) =
            (0..n).map(|_| control()).unzip();
        let Control {
            mut stop,
            mut reload,
        } = self;
        let told = controllers.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = stop.wait_for(|stop| *stop) => {
                        if changed.is_ok() {
                            told.iter().for_each(Controller::stop);
                        }
                        return;
                    }
                    Some(()) = reload.recv() => told.iter().for_each(Controller::reload),
                }
            }
        });
        (controllers, controls)
    }
}

const HELD: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The process's stop and reload signals, blocked until [`Signals::install`]
/// starts taking them.
pub struct Signals(SigSet);

impl Signals {
    /// Blocks the signals on this thread, and so on every thread started
    /// from it: call it before any other thread exists.
    pub fn hold() -> anyhow::Result<Self> {
        let set: SigSet = HELD.into_iter().collect();
        set.thread_block()?;
        Ok(Signals(set))
    }

    /// Starts the thread that takes the signals (one that came in the
    /// meantime is taken at once) and turns them into a [`Control`].
    pub fn install(self) -> anyhow::Result<Control> {
        let (controller, control) = control();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || take_signals(self.0, controller))?;
        Ok(control)
    }
}

fn take_signals(set: SigSet, controller: Controller) {
    loop {
        match set.wait() {
            Ok(Signal::SIGHUP) => controller.reload(),
            Ok(signal) => {
                tracing::info!("{signal} received");
                controller.stop();
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot wait for signals");
                return;
            }
        }
    }
}

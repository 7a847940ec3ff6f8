//! The process harness of the tests and the benchmark: it finds what
//! `cargo xtask build` built, starts real `registry` and `host` processes
//! (or any program) on loopback, reads back the address each one logs,
//! talks HTTP to them, and stops them again.
//!
//! One concept per module:
//!
//! - [`paths`]: where the binaries, plugins and stub plugins are.
//! - [`process`]: a started child process, its log, signals, its exit.
//! - [`sparrow`]: how the registry and the host are started.
//! - [`wait`]: waiting for a condition, with a deadline.
//! - [`http`]: an HTTP client, async and blocking.
//! - [`registry_api`]: the registry's HTTP API as the tests call it.
//! - [`fake`]: fake service instances that record what the registry sends.
//! - [`tempdir`]: a temporary directory removed when dropped.
//! - [`usage`]: a process's CPU time and resident memory.
//! - [`ports`]: a free loopback address.
//! - [`etcd`]: a real etcd cluster on loopback, and registry replicas on it.
//! - [`load`]: clients sending requests in the background, counting failures.
//!
//! Shortcuts that tests call on every line (`Proc::host`, `plugin`, `get`,
//! `TempDir::new`) panic with the reason, which fails the test with it; the
//! benchmark uses the forms that return errors (`Launch`, `Artifacts`,
//! `http::Client`, `TempDir::try_new`).

pub mod etcd;
pub mod fake;
pub mod http;
pub mod load;
pub mod paths;
pub mod ports;
pub mod process;
pub mod registry_api;
pub mod sparrow;
pub mod tempdir;
pub mod usage;
pub mod wait;

/// The `listening on ADDR` line every Sparrow binary logs once it listens.
/// Named here only, so that moving it to another crate changes one line.
pub use protocol::listening;

pub use nix::sys::signal::Signal;

pub use fake::{Behaviour, FakeService, Notification};
pub use http::{Reply, get, post, send};
pub use paths::{Artifacts, binary, on_path, plugin, stub};
pub use ports::free_addr;
pub use process::{Launch, Proc};
pub use registry_api::{RegistryProcess, addrs, counter, registered};
pub use sparrow::{
    FAST_HEARTBEATS, Heartbeats, NO_HEARTBEAT, ServiceSpec, config_text, in_process_host_args,
};
pub use tempdir::{TempDir, install_atomically};
pub use wait::{DEADLINE, Deadline, eventually, eventually_some, poll_until};

//! A free loopback address, for a process that must be told its address
//! before it starts (a registry restarted on the same port, a start-up
//! timed until its first answer). Anything that can bind `127.0.0.1:0` and
//! log its address should: see [`crate::process`].

use std::net::{SocketAddr, TcpListener};

/// An address on 127.0.0.1 that nothing listens on right now. Another
/// process may take it before the caller binds it: rare, not impossible.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

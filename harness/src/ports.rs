//! A free loopback address, for a process that must be told its address
//! before it starts (a registry restarted on the same port, an etcd member,
//! a start-up timed until its first answer). Anything that can bind
//! `127.0.0.1:0` and log its address should: see [`crate::process`].
//!
//! The port is picked below the kernel's ephemeral range, never by binding
//! port 0. A port from that range is what every outgoing connection takes
//! as its own: with load clients and etcd peers connecting all the time, a
//! port found free in it was now and then taken by some connection before
//! the process meant for it could bind it (seen: an etcd member failing
//! with "address already in use", one start in thirty under load). Below
//! the range, only another caller of this function can take it, and that
//! one picks at random too.

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The lowest port picked: above the ports services are commonly
/// configured on (Sparrow's own `cargo xtask up` uses 20000-20003).
const LOWEST: u16 = 21000;

/// Where the ephemeral range starts when the kernel does not say (Linux's
/// default is 32768-60999).
const DEFAULT_EPHEMERAL_START: u16 = 32768;

/// Tries before giving up: each is a random port checked by binding it.
const TRIES: usize = 1000;

/// An address on 127.0.0.1 that nothing listens on right now and that no
/// outgoing connection will take. Another caller may still bind it before
/// the process meant for it: possible, but one chance in thousands.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    let end = ephemeral_start().max(LOWEST + 1);
    let span = u64::from(end - LOWEST);
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..TRIES {
        let port = LOWEST + (random() % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            given.insert(port);
            return listener.local_addr();
        }
    }
    // Every pick was taken (a machine whose ephemeral range starts low):
    // fall back to a port the kernel finds free.
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

/// A random number, different in each call and in each process.
fn random() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_free_and_below_the_ephemeral_range() {
        let addr = free_addr().unwrap();
        assert!(addr.ip().is_loopback());
        if ephemeral_start() > LOWEST {
            assert!((LOWEST..ephemeral_start()).contains(&addr.port()), "{addr}");
        }
        TcpListener::bind(addr).expect("the address is free");
    }

    #[test]
    fn no_port_is_handed_out_twice_in_one_process() {
        let mut seen = BTreeSet::new();
        for _ in 0..2000 {
            let port = free_addr().unwrap().port();
            assert!(seen.insert(port), "port {port} handed out twice");
        }
    }
}

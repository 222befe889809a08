//! # Free loopback ports for throw-away servers
//!
//! [`free_port`] finds a port on 127.0.0.1 for a server that another process binds a moment
//! later (Mosquitto, PostgreSQL, `bcp-agent`'s metrics endpoint in tests). Asking the kernel
//! for port 0 and closing it would hand out a port from the ephemeral range, where the kernel
//! also picks the local ports of outgoing connections: between the close and the server's bind,
//! another socket on the machine can be given it ("Address already in use", seen once in CI).
//! So the port is drawn below that range, where only listeners that chose their port live.
//!
//! Nor is a port handed out twice by one process: tests run as threads of one process, and
//! between one server's release of its port here and its bind, another test's server could be
//! given the same port, and a readiness probe be answered by the wrong server.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

use anyhow::bail;

/// Where Linux's ephemeral range starts when `/proc` does not say (its default, 32768).
const DEFAULT_EPHEMERAL_LOW: u16 = 32_768;
/// The lowest port drawn (well above the registered services most machines run).
const LOWEST: u16 = 20_000;
/// How many candidates [`free_port`] tries.
const TRIES: u32 = 200;

/// The ports this process has handed out (see the module documentation).
static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port of 127.0.0.1 that was free a moment ago and lies below the kernel's ephemeral range.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(hold_free_port(Ipv4Addr::LOCALHOST.into())?
        .local_addr()?
        .port())
}

/// A listener on a free port of `ip` below the kernel's ephemeral range, held until dropped:
/// for a server of this process that binds its own socket a moment after the drop (the
/// embedded broker). No outgoing connection is given such a port meanwhile, and none can
/// connect to itself there (a connection from an ephemeral port to the same port, which
/// happens when nothing listens yet).
pub fn hold_free_port(ip: IpAddr) -> anyhow::Result<TcpListener> {
    let high = ephemeral_low().max(LOWEST + 1_000);
    let span = u32::from(high - LOWEST);
    let mut x = seed();
    for _ in 0..TRIES {
        x = xorshift32(x);
        // `span` fits a u16, so the sum does too.
        let port = LOWEST + u16::try_from(x % span).unwrap_or(0);
        let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
        if given.contains(&port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind((ip, port)) {
            given.insert(port);
            return Ok(listener);
        }
    }
    bail!(
        "no free port on {ip} in {LOWEST}-{} after {TRIES} tries",
        high - 1
    )
}

/// The first port of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`).
pub(crate) fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_LOW)
}

/// Different in each process and each call: the clock's nanoseconds and the process id.
fn seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ std::process::id().rotate_left(16)) | 1
}

/// One step of Marsaglia's xorshift: any spread will do, the bind is the real check.
fn xorshift32(mut x: u32) -> u32 {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;

    #[test]
    fn the_port_is_below_the_ephemeral_range_and_bindable() {
        let port = free_port().unwrap();
        assert!(
            port >= LOWEST && port < ephemeral_low().max(LOWEST + 1_000),
            "{port}"
        );
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[test]
    fn a_port_is_handed_out_once_per_process() {
        // 300 draws from about 12,000 ports: without the record, two would be the same
        // port almost surely (the birthday bound gives 97 %).
        let ports: Vec<u16> = (0..300).map(|_| free_port().unwrap()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }

    #[test]
    fn a_port_in_use_is_not_given() {
        // Hold many ports of the range; none of them may come back.
        let held: Vec<TcpListener> = (0..50)
            .filter_map(|_| free_port().ok())
            .filter_map(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).ok())
            .collect();
        assert!(held.len() >= 40, "only {} ports held", held.len());
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        for _ in 0..50 {
            let p = free_port().unwrap();
            assert!(!ports.contains(&p), "{p} is held");
        }
    }
}

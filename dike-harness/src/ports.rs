//! Addresses whose ports are free right now, for processes about to listen.
//!
//! A probed port is free only when the probe returns: something else may
//! take it before the process meant for it binds it. Each function narrows
//! that window in its own way (see each one's comment).

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Mutex;

/// A loopback address whose port is free right now: on `127.0.X.1`, with X
/// from this process's id, where the system has it (Linux has all of
/// 127.0.0.0/8), else on 127.0.0.1. Nodes' outgoing connections take
/// ephemeral ports on 127.0.0.1, and one of those could take a port chosen
/// there before the node meant to listen on it has bound it.
///
/// Never the same address twice in one process: the probe's port is free
/// again once it returns, and the system may hand it to the next probe
/// (two nodes of one test cluster were once given the same port).
pub fn free_loopback_addr() -> io::Result<SocketAddr> {
    static GIVEN: Mutex<BTreeSet<SocketAddr>> = Mutex::new(BTreeSet::new());
    let x = u8::try_from(std::process::id() % 254 + 1).unwrap_or(1);
    let own = Ipv4Addr::new(127, 0, x, 1);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let addr = TcpListener::bind((own, 0))
            .or_else(|_| TcpListener::bind("127.0.0.1:0"))
            .and_then(|l| l.local_addr())?;
        if given.insert(addr) {
            return Ok(addr);
        }
    }
}

/// An address on `ip` whose port is free right now (`ip` must exist on this
/// machine: any of 127.0.0.0/8 on Linux).
pub fn free_port(ip: Ipv4Addr) -> io::Result<SocketAddr> {
    let l = TcpListener::bind((IpAddr::V4(ip), 0)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot bind {ip}:0 (is 127.0.0.0/8 on lo?): {e}"),
        )
    })?;
    l.local_addr()
}

/// A port free on every address (`0.0.0.0`) right now, for a node that
/// listens on every address. It is below the range the system takes
/// ephemeral ports from: a port from that range could become the source
/// port of some outgoing connection (another test's, on 127.0.0.1) before
/// the node binds it, and a listener on `0.0.0.0` collides with it (CI
/// failed once that way).
pub fn free_wildcard_port() -> io::Result<u16> {
    let first_ephemeral = first_ephemeral_port();
    let low = 10_000.min(first_ephemeral / 2);
    let span = u64::from(first_ephemeral - low);
    let seed = u64::from(std::process::id()).wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
    (0..1000u64)
        .filter_map(|i| u16::try_from(u64::from(low) + (seed + i * 7919) % span).ok())
        .find(|&p| TcpListener::bind(("0.0.0.0", p)).is_ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("no free port on 0.0.0.0 below {first_ephemeral}"),
            )
        })
}

/// The lowest port the system hands out as an ephemeral (source) port.
fn first_ephemeral_port() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_address_is_never_handed_out_twice() {
        let addrs: BTreeSet<SocketAddr> = (0..50)
            .map(|_| free_loopback_addr().expect("a free port"))
            .collect();
        assert_eq!(addrs.len(), 50);
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn every_loopback_address_gets_a_free_port() {
        let a = free_port(Ipv4Addr::new(127, 0, 9, 3)).expect("a free port");
        assert_eq!(a.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 9, 3)));
        assert_ne!(a.port(), 0);
    }

    #[test]
    fn a_wildcard_port_is_below_the_ephemeral_range() {
        let p = free_wildcard_port().expect("a free port");
        assert!(p < first_ephemeral_port(), "{p}");
        assert!(TcpListener::bind(("0.0.0.0", p)).is_ok());
    }
}

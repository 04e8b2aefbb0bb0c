//! Free ports on 127.0.0.1 for a hub that the demo and the tests start later (its config must
//! name the port before the process binds it).
//!
//! A port found by binding port 0 comes from the kernel's ephemeral range, the same range
//! every outgoing socket (a till's QUIC client, an HTTP client, a PostgreSQL connection)
//! draws from: between our check and the hub's bind another test's socket can take it,
//! and the hub fails with "Address already in use". So ports are picked below the
//! ephemeral range, where the kernel never assigns a socket by itself, each one checked
//! free for both UDP and TCP, and never handed out twice by one process.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// Linux's default when `/proc` cannot be read.
const DEFAULT_EPHEMERAL: (u16, u16) = (32768, 60999);
/// The lowest port handed out (clear of well-known and registered services' usual ports).
const LOWEST: u16 = 10000;

/// The ports handed out so far by this process (an offset into the pick range).
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`).
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse_range(&text))
        .unwrap_or(DEFAULT_EPHEMERAL)
}

fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut fields = text.split_whitespace().map(str::parse::<u16>);
    let low = fields.next()?.ok()?;
    let high = fields.next()?.ok()?;
    (low <= high).then_some((low, high))
}

/// The range we pick from: below the ephemeral range, or above it when there is too
/// little room below.
fn pick_range((low, high): (u16, u16)) -> (u16, u16) {
    if low > LOWEST + 1000 {
        (LOWEST, low - 1)
    } else if high < u16::MAX - 1000 {
        (high + 1, u16::MAX)
    } else {
        // Everything is ephemeral: nothing better than the whole range.
        (LOWEST, u16::MAX)
    }
}

/// A port on 127.0.0.1 outside the ephemeral range, free for UDP and TCP right now.
pub fn free_port() -> io::Result<u16> {
    let (first, last) = pick_range(ephemeral_range());
    let span = u32::from(last - first) + 1;
    // Processes start at different places so that two test binaries rarely meet.
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span.min(4096) {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = first + offset as u16;
        if is_free(port) {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free port on 127.0.0.1 between {first} and {last}"),
    ))
}

fn is_free(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok()
}

/// A free UDP address on 127.0.0.1 for a hub's QUIC listener.
pub fn free_udp_addr() -> io::Result<SocketAddr> {
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)))
}

/// A free TCP address on 127.0.0.1 for a hub's HTTP listener.
pub fn free_tcp_addr() -> io::Result<SocketAddr> {
    free_udp_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_outside_the_kernels_ephemeral_range() {
        let (low, high) = ephemeral_range();
        for _ in 0..50 {
            let port = free_udp_addr().unwrap().port();
            assert!(
                !(low..=high).contains(&port),
                "port {port} is in the ephemeral range {low}-{high}, where outgoing sockets land"
            );
            let port = free_tcp_addr().unwrap().port();
            assert!(!(low..=high).contains(&port), "tcp port {port}");
        }
    }

    #[test]
    fn a_process_never_hands_out_a_port_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
    }

    #[test]
    fn a_port_is_free_for_both_protocols() {
        let port = free_port().unwrap();
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        UdpSocket::bind(addr).expect("udp");
        TcpListener::bind(addr).expect("tcp");
    }

    #[test]
    fn the_pick_range_avoids_the_ephemeral_range() {
        assert_eq!(pick_range((32768, 60999)), (10000, 32767));
        // A kernel whose ephemeral range starts low: pick above it.
        assert_eq!(pick_range((1024, 40000)), (40001, u16::MAX));
        assert_eq!(pick_range((1024, 65535)), (10000, 65535));
        assert_eq!(parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range("garbage"), None);
        assert_eq!(parse_range("5 1"), None);
    }
}

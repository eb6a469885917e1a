//! Free loopback ports, and waiting for a process to listen on one: what this crate does for
//! its Redis processes, open to the other local processes the tests and the benchmark start.
//!
//! The ports come from below the system's ephemeral range. A port the system hands out for a
//! listener on port 0 lies inside that range, where any outgoing connection may take it as
//! its source port between the check and the server's bind, or after a server on it was
//! stopped and before it is started again: on a busy machine that happens (Linux gives
//! `connect` the even ports and `bind` to port 0 the odd ones, so the second of a run of
//! ports was the one lost).

use std::{
    collections::BTreeSet,
    hash::{BuildHasher, RandomState},
    io,
    net::{TcpListener, TcpStream},
    ops::Range,
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

/// The lowest port picked: above the registered ports most services listen on.
const LOWEST: u16 = 10_000;

/// Where Linux's ephemeral range starts unless configured otherwise.
const EPHEMERAL_START: u16 = 32_768;

/// Ports this process handed out already, never handed out twice: two servers started side
/// by side by one test process do not race for one port.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port that was free a moment ago, outside the range outgoing connections take
/// their ports from.
///
/// Another process can still bind it before the caller does, so whoever starts a server on
/// it should try again with a fresh port when the bind fails.
///
/// # Errors
/// When no free port is found.
pub fn free_port() -> io::Result<u16> {
    free_ports(1)
}

/// The first of `count` consecutive loopback ports that were free a moment ago (see
/// [`free_port`]).
///
/// # Errors
/// When no such run is found in a thousand tries.
pub fn free_ports(count: u16) -> io::Result<u16> {
    let range = listening_range();
    let choices = range.len().saturating_sub(usize::from(count)) + 1;
    for attempt in 0..1_000_u64 {
        let offset = RandomState::new().hash_one(attempt) % choices as u64;
        let base = range.start + u16::try_from(offset).expect("below the range's end");
        let run = base..base + count;
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if run.clone().any(|port| handed_out.contains(&port)) {
            continue;
        }
        if run
            .clone()
            .all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        {
            handed_out.extend(run);
            return Ok(base);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        format!("no run of {count} free loopback ports in {range:?}"),
    ))
}

/// The ports below the ephemeral range, as Linux states it (at least a thousand ports, even
/// where that range starts lower).
fn listening_range() -> Range<u16> {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(EPHEMERAL_START);
    LOWEST..ephemeral.max(LOWEST + 1_000)
}

/// Waits until something accepts connections on the loopback `port`, for at most `timeout`;
/// returns whether it did.
pub fn wait_until_listening(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_free_distinct_and_outside_the_ephemeral_range() {
        let range = listening_range();
        let mut seen = BTreeSet::new();
        for _ in 0..50 {
            let base = free_ports(3).expect("a run");
            for port in base..base + 3 {
                assert!(range.contains(&port), "{port} outside {range:?}");
                assert!(seen.insert(port), "{port} handed out twice");
                TcpListener::bind(("127.0.0.1", port)).expect("free");
            }
        }
    }
}

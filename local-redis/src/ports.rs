//! Free loopback ports, and waiting for a process to listen on one: what this crate does for
//! its Redis processes, open to the other local processes the tests and the benchmark start.

use std::{
    net::{TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

/// A loopback port that was free a moment ago: the system's pick for a listener on port 0.
///
/// Another process can take it before the caller binds it, so whoever starts a server on it
/// should try again with a fresh port when the bind fails.
///
/// # Errors
/// When no listener can be bound on 127.0.0.1 at all.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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

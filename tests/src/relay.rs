//! A TCP relay between the store and a Redis server: it counts round trips where they happen,
//! on the wire, can hold a connection's commands at a chosen one, and can stall what Redis
//! sends to the near cache's tracking connections (a lagging network path).
//!
//! A round trip is counted each time a client sends after it last received (or sends for the
//! first time): a pipeline of commands written at once is one, two commands each awaited
//! before the next are two, however the bytes are split into segments. With one request at a
//! time, that is the number of times the request waited for Redis.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{Notify, watch},
    task::JoinHandle,
};

/// A relay on a free loopback port in front of one Redis server; stops when dropped.
pub struct Relay {
    address: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    upstream: SocketAddr,
    round_trips: AtomicU64,
    hold: Mutex<Option<Hold>>,
    /// Whether what Redis sends to tracking connections is held back.
    stalled: watch::Sender<bool>,
}

/// A hold on the next command of a given name: it, and everything its connection sends after
/// it, waits until the hold is released.
#[derive(Clone)]
pub struct Hold {
    command: String,
    reached: Arc<Notify>,
    release: watch::Sender<bool>,
}

impl Hold {
    /// Returns once a command of the held name reached the relay and is being held.
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    /// Lets the held command, and all that follows it, through.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

impl Relay {
    /// Starts relaying to the Redis server at `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let address = listener.local_addr().expect("a bound address");
        let shared = Arc::new(Shared {
            upstream,
            round_trips: AtomicU64::new(0),
            hold: Mutex::new(None),
            stalled: watch::channel(false).0,
        });
        let accepting = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = Arc::clone(&accepting);
                tokio::spawn(async move { relay(client, shared).await });
            }
        });
        Self {
            address,
            shared,
            accept,
        }
    }

    /// The URL for clients that should go through the relay.
    pub fn url(&self) -> String {
        format!("redis://{}", self.address)
    }

    /// The round trips counted since the last call (or the start).
    pub fn take_round_trips(&self) -> u64 {
        self.shared.round_trips.swap(0, Ordering::AcqRel)
    }

    /// Holds the next command named `command` (any case) on whatever connection sends it.
    pub fn hold_at(&self, command: &str) -> Hold {
        let hold = Hold {
            command: command.to_ascii_uppercase(),
            reached: Arc::new(Notify::new()),
            release: watch::channel(false).0,
        };
        *self.shared.hold.lock().expect("hold lock") = Some(hold.clone());
        hold
    }

    /// Holds back (`true`) or lets through (`false`) everything Redis sends to the tracking
    /// connections (those that open with `HELLO`), in order, as a lagging path would.
    pub fn stall_tracking(&self, stalled: bool) {
        self.shared.stalled.send_replace(stalled);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(client: TcpStream, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    // As Redis does on its own sockets: without it, Nagle's algorithm holds a small write back
    // until the last one is acknowledged, up to the peer's delayed ACK (40 ms).
    if client.set_nodelay(true).is_err() || server.set_nodelay(true).is_err() {
        return;
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Whether the server's last bytes came after the client's: the client's next bytes then
    // start a round trip.
    let replied = Arc::new(AtomicBool::new(true));
    let tracking = Arc::new(AtomicBool::new(false));
    let to_client = tokio::spawn(replies(
        server_read,
        client_write,
        Arc::clone(&replied),
        Arc::clone(&tracking),
        shared.stalled.subscribe(),
    ));
    requests(client_read, server_write, replied, tracking, shared).await;
    to_client.abort();
}

async fn replies(
    mut server: OwnedReadHalf,
    mut client: OwnedWriteHalf,
    replied: Arc<AtomicBool>,
    tracking: Arc<AtomicBool>,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(read @ 1..) = server.read(&mut buffer).await {
        replied.store(true, Ordering::Release);
        if tracking.load(Ordering::Acquire) {
            let _ = stalled.wait_for(|stalled| !*stalled).await;
        }
        if client.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

async fn requests(
    mut client: OwnedReadHalf,
    mut server: OwnedWriteHalf,
    replied: Arc<AtomicBool>,
    is_tracking: Arc<AtomicBool>,
    shared: Arc<Shared>,
) {
    let mut pending = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    // The near cache's tracking connections, the only ones that speak RESP3 and so open with
    // `HELLO`, are no request's: their heartbeats are not counted.
    let mut tracking = None;
    while let Ok(read @ 1..) = client.read(&mut buffer).await {
        let starts_trip = replied.swap(false, Ordering::AcqRel);
        pending.extend_from_slice(&buffer[..read]);
        if tracking.is_none()
            && let Some((_, name)) = next_command(&pending)
        {
            tracking = Some(name == "HELLO");
            is_tracking.store(name == "HELLO", Ordering::Release);
        }
        if starts_trip && tracking == Some(false) {
            shared.round_trips.fetch_add(1, Ordering::AcqRel);
        }
        while let Some((length, name)) = next_command(&pending) {
            wait_if_held(&shared, &name).await;
            if server.write_all(&pending[..length]).await.is_err() {
                return;
            }
            pending.drain(..length);
        }
    }
}

async fn wait_if_held(shared: &Shared, name: &str) {
    let hold = {
        let mut hold = shared.hold.lock().expect("hold lock");
        match hold.as_ref() {
            Some(held) if held.command == name => hold.take(),
            _ => None,
        }
    };
    if let Some(hold) = hold {
        let mut released = hold.release.subscribe();
        hold.reached.notify_one();
        let _ = released.wait_for(|released| *released).await;
    }
}

/// The length of the first complete command in `bytes` (a RESP array of bulk strings, as
/// clients send them) and its name in upper case, or `None` while it is incomplete.
fn next_command(bytes: &[u8]) -> Option<(usize, String)> {
    let (count, mut at) = header(bytes, b'*')?;
    let mut name = String::new();
    for index in 0..count {
        let (length, start) = header(&bytes[at..], b'$')?;
        let end = at + start + length;
        if bytes.len() < end + 2 {
            return None;
        }
        if index == 0 {
            name = String::from_utf8_lossy(&bytes[at + start..end]).to_ascii_uppercase();
        }
        at = end + 2;
    }
    Some((at, name))
}

/// `{kind}{number}\r\n` at the start of `bytes`: the number and the header's length.
fn header(bytes: &[u8], kind: u8) -> Option<(usize, usize)> {
    let line_end = bytes.windows(2).position(|pair| pair == b"\r\n")?;
    let line = bytes.get(..line_end)?;
    let (&first, number) = line.split_first()?;
    assert_eq!(
        first, kind,
        "a client sent something other than RESP arrays"
    );
    let number = std::str::from_utf8(number).ok()?.parse().ok()?;
    Some((number, line_end + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_split_where_they_end() {
        let two = b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*1\r\n$4\r\nPING\r\n";
        assert_eq!(next_command(two), Some((22, "ECHO".to_owned())));
        assert_eq!(next_command(&two[22..]), Some((14, "PING".to_owned())));
        assert_eq!(next_command(&two[..20]), None, "incomplete");
    }
}

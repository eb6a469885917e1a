//! The watch on the tracking connections' sockets: whether everything Redis sent on them so
//! far has been applied, told without waiting, for all of them in one system call.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use rustix::event::{PollFd, PollFlags, Timespec};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What tells, without waiting, whether everything Redis sent on a tracking connection has
/// been applied: a second handle on its socket, to ask the system whether bytes wait in it,
/// and a count of the connection's activity.
///
/// Redis writes a change's invalidations out before (or in the same pass as) the answer to the
/// change, so once a client has that answer, the invalidation is at least in this socket: if
/// the socket holds nothing and everything read from it was applied, no change whose answer
/// is out can be missing from the cache. (The connection's driver reads again only after it
/// applied every message of its last read.)
#[derive(Debug)]
pub(crate) struct Watch {
    socket: std::net::TcpStream,
    /// Even while the connection is idle: everything read from the socket applied, and no
    /// system call on it under way. Odd from the start of a read until a read finds the
    /// socket empty, and during a write. Only the connection's driver changes it, on one
    /// thread. A system call on the socket holds the socket's lock, and bytes that arrive
    /// meanwhile wait in a backlog the system does not count as readable until the call
    /// ends: so a socket is seen empty only while this count is even and unchanged.
    activity: AtomicU64,
}

impl Watch {
    fn activity(&self) -> u64 {
        self.activity.load(Ordering::SeqCst)
    }

    fn is_idle(&self) -> bool {
        self.activity().is_multiple_of(2)
    }

    /// Runs `call` on the socket as activity, unless a read left it active already.
    fn during<T>(&self, call: impl FnOnce() -> T) -> T {
        let idle = self.is_idle();
        if idle {
            self.activity.fetch_add(1, Ordering::SeqCst);
        }
        let result = call();
        if idle {
            self.activity.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
}

/// Whether every byte Redis sent so far on the sockets `watches` watch has been applied: no
/// read or write under way or unapplied on any of them, and nothing waiting in any (one
/// `poll`, which unlike a read does not wait for a socket's lock).
pub(crate) fn all_quiet(watches: &[Arc<Watch>]) -> bool {
    let before: Vec<u64> = watches.iter().map(|watch| watch.activity()).collect();
    if !before.iter().all(|activity| activity.is_multiple_of(2)) {
        return false;
    }
    let mut sockets: Vec<PollFd<'_>> = watches
        .iter()
        .map(|watch| PollFd::new(&watch.socket, PollFlags::IN))
        .collect();
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Any event (bytes, an error, a hang-up) is a reason to go to Redis.
    let empty = matches!(rustix::event::poll(&mut sockets, Some(&now)), Ok(0));
    empty
        && watches
            .iter()
            .zip(&before)
            .all(|(watch, &activity)| watch.activity() == activity)
}

/// A tracking connection's socket, counting its activity for its [`Watch`].
pub(crate) struct Watched {
    inner: tokio::net::TcpStream,
    watch: Arc<Watch>,
}

impl Watched {
    /// `stream` (connected, not yet read from), and the watch on it: a second handle on its
    /// socket.
    pub(crate) fn new(stream: std::net::TcpStream) -> io::Result<(Self, Arc<Watch>)> {
        let watch = Arc::new(Watch {
            socket: stream.try_clone()?,
            activity: AtomicU64::new(0),
        });
        let watched = Self {
            inner: tokio::net::TcpStream::from_std(stream)?,
            watch: Arc::clone(&watch),
        };
        Ok((watched, watch))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.watch.is_idle() {
            self.watch.activity.fetch_add(1, Ordering::SeqCst);
        }
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        // Found empty: everything before was applied (see `Watch`). Bytes read stay
        // unapplied, and the count odd, until the driver reads again.
        if read.is_pending() {
            self.watch.activity.fetch_add(1, Ordering::SeqCst);
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Self { inner, watch } = &mut *self;
        watch.during(|| Pin::new(inner).poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Self { inner, watch } = &mut *self;
        watch.during(|| Pin::new(inner).poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// Polls `watched` for a read once: what it read, or `Pending`.
    async fn read_once(watched: &mut Watched) -> Poll<usize> {
        std::future::poll_fn(|cx| {
            let mut bytes = [0_u8; 16];
            let mut buf = ReadBuf::new(&mut bytes);
            let read = Pin::new(&mut *watched).poll_read(cx, &mut buf);
            Poll::Ready(read.map(|result| {
                result.expect("a read");
                buf.filled().len()
            }))
        })
        .await
    }

    #[test]
    fn quiet_only_with_nothing_unread_unapplied_or_under_way() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
            let client = std::net::TcpStream::connect(listener.local_addr().expect("an address"))
                .expect("connected");
            let (mut redis, _) = listener.accept().expect("accepted");
            client.set_nonblocking(true).expect("non-blocking");
            let (mut watched, watch) = Watched::new(client).expect("watched");
            let watches = [Arc::clone(&watch)];
            assert_eq!(read_once(&mut watched).await, Poll::Pending);
            assert!(all_quiet(&watches), "nothing sent yet");

            redis.write_all(b"invalidation").expect("sent");
            assert!(!all_quiet(&watches), "bytes wait in the socket");
            // Read as the driver reads, once the runtime saw the socket readable.
            let read = loop {
                if let Poll::Ready(read) = read_once(&mut watched).await {
                    break read;
                }
                tokio::task::yield_now().await;
            };
            assert_eq!(read, 12);
            assert!(!all_quiet(&watches), "read, but not yet applied");
            assert_eq!(read_once(&mut watched).await, Poll::Pending);
            assert!(all_quiet(&watches), "applied, socket empty");

            watch.during(|| assert!(!all_quiet(&watches), "a write under way"));
            assert!(all_quiet(&watches));
            drop(redis);
            assert!(!all_quiet(&watches), "closed by Redis");
        });
    }
}

//! The watch on a tracking connection's socket: whether everything Redis sent on it so far
//! has been applied, told without waiting.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What tells, without waiting, whether everything Redis sent on a tracking connection has
/// been applied: a second handle on its socket, to look for bytes not yet read, and counts of
/// the reads begun and of those that found the socket empty.
///
/// Redis writes a change's invalidations out before (or in the same pass as) the answer to the
/// change, so once a client has that answer, the invalidation is at least in this socket: if
/// the socket holds nothing and every read taken from it was applied, no change whose answer
/// is out can be missing from the cache. (The connection's driver reads again only after it
/// applied every message of its last read.)
#[derive(Debug)]
pub(crate) struct Watch {
    socket: std::net::TcpStream,
    begun: AtomicU64,
    settled: AtomicU64,
}

impl Watch {
    /// Whether every byte Redis sent so far has been applied: no read in progress or
    /// unapplied, and nothing waiting in the socket.
    pub(crate) fn is_quiet(&self) -> bool {
        let begun = self.begun.load(Ordering::SeqCst);
        if self.settled.load(Ordering::SeqCst) != begun {
            return false;
        }
        let mut byte = [0_u8];
        let empty = matches!(
            self.socket.peek(&mut byte),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock
        );
        empty && self.begun.load(Ordering::SeqCst) == begun
    }
}

/// A tracking connection's socket, counting the reads of its [`Watch`].
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
            begun: AtomicU64::new(0),
            settled: AtomicU64::new(0),
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
        let begun = self.watch.begun.fetch_add(1, Ordering::SeqCst) + 1;
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if read.is_pending() {
            self.watch.settled.store(begun, Ordering::SeqCst);
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
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

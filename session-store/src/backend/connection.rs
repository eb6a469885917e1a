//! Pooled connections: to one node (a multiplexed connection) or to a cluster (redis-rs's
//! cluster connection, which routes each request to the node that owns its key), each with
//! what is known of its health; and the handle one request uses.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster_async::ClusterConnection,
};

use crate::session::clock::millis;

/// A connection of either kind. Both are handles that many requests can use at once.
#[derive(Clone)]
pub(crate) enum Link {
    /// To one server: a single node, or the primary the sentinels named.
    Node(MultiplexedConnection),
    /// To a cluster.
    Cluster(ClusterConnection),
}

/// A pooled Redis connection and what is known of its health.
pub struct Connection {
    pub(crate) link: Link,
    /// The server's address, when it matters which server it is (behind Sentinel).
    pub(crate) server: Option<String>,
    pub(crate) health: Arc<Health>,
    /// Held by this, the pool's copy, alone, while the pool holds it (see [`Remembered`]).
    pooled: Arc<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(
        link: Link,
        server: Option<String>,
        pool_failures: Arc<AtomicU64>,
        started: Instant,
    ) -> Self {
        let health = Arc::new(Health {
            started,
            proven_at: AtomicU64::new(0),
            proven_after_failures: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            pool_failures,
        });
        health.prove();
        Self {
            link,
            server,
            health,
            pooled: Arc::new(()),
        }
    }

    /// A handle on this connection kept beside the pool.
    pub(crate) fn remember(&self) -> Remembered {
        Remembered {
            link: self.link.clone(),
            server: self.server.clone(),
            health: Arc::clone(&self.health),
            pooled: Arc::downgrade(&self.pooled),
        }
    }

    /// Leaves the pool (the application took it, or the pool let it go): a [`Remembered`]
    /// handle on it no longer counts as pooled.
    pub(crate) fn leave_pool(&mut self) {
        self.pooled = Arc::new(());
    }

    /// A handle on this connection for one request, which shares it with other requests.
    pub(crate) fn share(&self) -> SharedConnection {
        SharedConnection {
            link: self.link.clone(),
            health: Arc::clone(&self.health),
        }
    }
}

/// A handle on a pooled connection kept outside the pool, which knows whether the pool still
/// holds the connection: one the pool dropped (resized, reaped, failed) or the application
/// took is not the pool's to share any more.
pub(crate) struct Remembered {
    link: Link,
    server: Option<String>,
    health: Arc<Health>,
    pooled: Weak<()>,
}

impl std::fmt::Debug for Remembered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remembered")
            .field("health", &self.health)
            .field("pooled", &self.is_pooled())
            .finish_non_exhaustive()
    }
}

impl Remembered {
    /// Whether the pool still holds the connection.
    pub(crate) fn is_pooled(&self) -> bool {
        self.pooled.strong_count() > 0
    }

    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    pub(crate) fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    /// A handle for one request, as [`Connection::share`] makes.
    pub(crate) fn share(&self) -> SharedConnection {
        SharedConnection {
            link: self.link.clone(),
            health: Arc::clone(&self.health),
        }
    }
}

/// The health of one connection, shared by the pool's copy and the requests using it.
#[derive(Debug)]
pub(crate) struct Health {
    started: Instant,
    /// Milliseconds from `started` to the last sign of life (a command answered).
    proven_at: AtomicU64,
    /// The pool's failure count at that moment.
    proven_after_failures: AtomicU64,
    broken: AtomicBool,
    pool_failures: Arc<AtomicU64>,
}

impl Health {
    fn now(&self) -> u64 {
        millis(self.started.elapsed())
    }

    pub(crate) fn prove(&self) {
        self.proven_after_failures.store(
            self.pool_failures.load(Ordering::Acquire),
            Ordering::Release,
        );
        self.proven_at.store(self.now(), Ordering::Release);
    }

    /// Proven within the last `window` milliseconds, and no connection of the pool failed
    /// since.
    pub(crate) fn is_trusted(&self, window: u64) -> bool {
        let age = self
            .now()
            .saturating_sub(self.proven_at.load(Ordering::Acquire));
        let failures = self.pool_failures.load(Ordering::Acquire);
        age < window && self.proven_after_failures.load(Ordering::Acquire) == failures
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    fn fail(&self) {
        self.pool_failures.fetch_add(1, Ordering::AcqRel);
    }
}

/// What became of a command sent on a connection.
pub(crate) enum CommandFate<'a> {
    /// Redis answered (possibly with an error reply, which says nothing against the connection).
    Answered,
    /// The command failed with this error.
    Failed(&'a RedisError),
    /// No answer came within the command timeout.
    TimedOut,
}

/// One request's handle on a pooled connection.
pub(crate) struct SharedConnection {
    link: Link,
    health: Arc<Health>,
}

/// One command in flight on a connection. Dropped unsettled, the command was cut off (by the
/// operation's deadline) without an answer: as after a timeout, every connection of the pool
/// must prove itself before its next use.
pub(crate) struct InFlight(Option<Arc<Health>>);

impl InFlight {
    /// The command came back, one way or the other.
    pub(crate) fn settle(mut self) {
        self.0 = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(health) = self.0.take() {
            health.fail();
        }
    }
}

impl SharedConnection {
    /// Sends independent `commands`, each on one key, together: one pipeline to one server;
    /// on a cluster, where a pipeline must stay within one slot, each command on its own, all
    /// at once (redis-rs pipelines those bound for one node on its connection). Each command's
    /// own error comes back in its place.
    pub(crate) async fn each(&self, commands: &[Cmd]) -> RedisResult<Vec<RedisResult<Value>>> {
        match &self.link {
            Link::Node(node) => {
                let mut pipe = redis::pipe();
                for command in commands {
                    pipe.add_command(command.clone());
                }
                pipe.ignore_errors().query_async(&mut node.clone()).await
            }
            Link::Cluster(cluster) => Ok(futures_util::future::join_all(commands.iter().map(
                |command| {
                    let mut cluster = cluster.clone();
                    async move { command.query_async(&mut cluster).await }
                },
            ))
            .await),
        }
    }

    /// Marks a command as sent on this connection, until [`InFlight::settle`].
    pub(crate) fn in_flight(&self) -> InFlight {
        InFlight(Some(Arc::clone(&self.health)))
    }

    /// Records how a command went, so the pool knows whether to trust this connection.
    pub(crate) fn record(&self, outcome: CommandFate<'_>) {
        match outcome {
            CommandFate::Answered => self.health.prove(),
            // An error reply (e.g. NOSCRIPT): the connection itself works.
            CommandFate::Failed(err) if !condemns_connection(err) => self.health.prove(),
            CommandFate::Failed(_) => {
                self.health.broken.store(true, Ordering::Release);
                self.health.fail();
            }
            // Slow, perhaps gone: every connection must prove itself before it is used again.
            CommandFate::TimedOut => self.health.fail(),
        }
    }
}

/// Whether `err` says the connection must be replaced: it broke, or the server behind it is
/// no longer a primary (after a failover a new connection may reach the new one).
fn condemns_connection(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_unrecoverable_error()
        || matches!(
            err.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(node) => node.req_packed_command(cmd),
            Self::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(node) => node.req_packed_commands(cmd, offset, count),
            Self::Cluster(cluster) => cluster.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(node) => node.get_db(),
            Self::Cluster(cluster) => cluster.get_db(),
        }
    }
}

impl ConnectionLike for SharedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.link.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.link.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.link.get_db()
    }
}

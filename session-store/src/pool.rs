//! The connection pool: deadpool, with a manager that checks a connection's health only when
//! the connection has not proven itself moments ago.
//!
//! deadpool-redis's own manager sends `UNWATCH` + `PING` every time it hands a connection out
//! again: one extra round trip per request, which doubles the cost of a session read. This
//! manager wraps it and skips that check when the connection completed a command within the
//! last [`TRUST_WINDOW`] and no connection of the pool has failed since. A connection whose
//! command failed at the connection level is discarded at its next checkout, and every failure
//! makes every other connection prove itself again (the `PING`), so a Redis restart costs at
//! most the requests that were in flight on the old connections.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult,
    Value,
    aio::{ConnectionLike, MultiplexedConnection},
};

/// How long after a successful command a connection is handed out again without a `PING`.
pub const TRUST_WINDOW: Duration = Duration::from_secs(1);

/// A deadpool pool of Redis connections managed by [`Manager`].
pub type Pool = managed::Pool<Manager>;

/// A connection checked out of a [`Pool`].
pub type PooledConnection = managed::Object<Manager>;

/// Creates Redis connections and decides when one must prove its health before reuse.
#[derive(Debug)]
pub struct Manager {
    inner: deadpool_redis::Manager,
    /// Counts connection failures; a connection proven before the latest one is checked again.
    failures: Arc<AtomicU64>,
}

impl Manager {
    /// A manager for the Redis at `params` (a URL such as `redis://127.0.0.1:6379`).
    ///
    /// Its connections have no timeouts of their own (redis-rs would otherwise cut every
    /// command at 500 ms and every connect at 1 s): the store's timeouts govern.
    ///
    /// # Errors
    /// When `params` cannot be turned into connection settings.
    pub fn new<T: IntoConnectionInfo>(params: T) -> RedisResult<Self> {
        let unbounded = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        Ok(Self::from(deadpool_redis::Manager::new_with_config(
            params, unbounded,
        )?))
    }
}

/// Wraps a deadpool-redis manager, e.g. one made with
/// `deadpool_redis::Manager::new_with_config` for connection-level settings. Give its
/// `AsyncConnectionConfig` no response timeout, or one above the store's command timeout.
impl From<deadpool_redis::Manager> for Manager {
    fn from(inner: deadpool_redis::Manager) -> Self {
        Self {
            inner,
            failures: Arc::default(),
        }
    }
}

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = RedisError;

    async fn create(&self) -> Result<Connection, RedisError> {
        let failures = self.failures.load(Ordering::Acquire);
        let inner = managed::Manager::create(&self.inner).await?;
        Ok(Connection {
            inner,
            proven_at: Some(Instant::now()),
            proven_after_failures: failures,
            failures: Arc::clone(&self.failures),
            broken: false,
        })
    }

    async fn recycle(&self, conn: &mut Connection, metrics: &Metrics) -> RecycleResult<RedisError> {
        if conn.broken {
            return Err(RecycleError::message("the connection failed"));
        }
        let failures = self.failures.load(Ordering::Acquire);
        let recently_proven = conn.proven_at.is_some_and(|at| at.elapsed() < TRUST_WINDOW);
        if recently_proven && conn.proven_after_failures == failures {
            return Ok(());
        }
        managed::Manager::recycle(&self.inner, &mut conn.inner, metrics).await?;
        conn.proven_at = Some(Instant::now());
        conn.proven_after_failures = failures;
        Ok(())
    }
}

/// A multiplexed Redis connection that remembers whether it last worked.
pub struct Connection {
    inner: MultiplexedConnection,
    proven_at: Option<Instant>,
    proven_after_failures: u64,
    failures: Arc<AtomicU64>,
    broken: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("proven_at", &self.proven_at)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// What became of a command sent on a connection.
pub(crate) enum Outcome<'a> {
    /// Redis answered (possibly with an error reply, which says nothing against the connection).
    Answered,
    /// The command failed with this error.
    Failed(&'a RedisError),
    /// No answer came within the command timeout.
    TimedOut,
}

impl Connection {
    /// Records how a command went, so the pool knows whether to trust this connection.
    pub(crate) fn record(&mut self, outcome: Outcome<'_>) {
        match outcome {
            Outcome::Answered => self.prove(),
            Outcome::Failed(err) if !(err.is_io_error() || err.is_unrecoverable_error()) => {
                // An error reply (e.g. NOSCRIPT): the connection itself works.
                self.prove();
            }
            Outcome::Failed(_) => {
                self.broken = true;
                self.failures.fetch_add(1, Ordering::AcqRel);
            }
            Outcome::TimedOut => {
                self.proven_at = None;
                self.failures.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    fn prove(&mut self) {
        self.proven_at = Some(Instant::now());
        self.proven_after_failures = self.failures.load(Ordering::Acquire);
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.inner.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.inner.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

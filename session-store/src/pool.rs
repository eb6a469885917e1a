//! The connection pool: deadpool, with a manager that checks a connection's health only when
//! the connection has not proven itself moments ago.
//!
//! Two things make deadpool-redis's own pool slow for sessions. Its manager sends `UNWATCH` +
//! `PING` every time it hands a connection out again: one extra round trip per request, which
//! doubles the cost of a session read. And a request holds its connection until it is done, so
//! at most `max_size` commands are in flight, although each connection is a multiplexed one
//! that could carry many at once.
//!
//! So the store takes a connection from the pool, clones its multiplexed handle and gives the
//! connection back at once: requests share connections and pipeline on them, and the pool
//! bounds the number of connections, not of requests. The manager skips the health check for a
//! connection that completed a command within its trust window (the store's `trust_window`
//! setting, 1 s by default) with no failure in the pool since. A connection whose command failed at the connection level is discarded at its
//! next checkout, and every failure makes every other connection prove itself again (the
//! `PING`), so a Redis restart costs at most the requests in flight on the old connections.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    RedisResult, ServerErrorKind, Value,
    aio::{ConnectionLike, MultiplexedConnection},
};

/// The trust window of a manager no store has set one on yet: the store's default.
const DEFAULT_TRUST_WINDOW: Duration = Duration::from_secs(1);

/// A deadpool pool of Redis connections managed by [`Manager`].
pub type Pool = managed::Pool<Manager>;

/// Creates Redis connections and decides when one must prove its health before reuse.
#[derive(Debug)]
pub struct Manager {
    inner: deadpool_redis::Manager,
    /// Counts connection failures; a connection proven before the latest one is checked again.
    failures: Arc<AtomicU64>,
    /// The origin of the millisecond clock that [`Health`] keeps.
    started: Instant,
    /// Milliseconds after a connection's last answered command during which it is handed out
    /// again without a health check.
    trust_window: AtomicU64,
}

impl Manager {
    /// A manager for the Redis at `params` (a URL such as `redis://127.0.0.1:6379`).
    ///
    /// Its connections have no timeouts of their own (redis-rs would otherwise cut every
    /// command at 500 ms and every connect at 1 s): the store's timeouts govern.
    ///
    /// With the `tls` feature (on by default), `rediss://` URLs connect through rustls, checking
    /// the server against the system's root certificates; for a private CA, pass the
    /// `ConnectionInfo` of a `redis::Client::build_with_tls`. The first manager installs ring
    /// as rustls's process-wide crypto provider, unless the application installed one before.
    ///
    /// # Errors
    /// When `params` cannot be turned into connection settings.
    pub fn new<T: IntoConnectionInfo>(params: T) -> RedisResult<Self> {
        #[cfg(feature = "tls")]
        let _ = rustls::crypto::ring::default_provider().install_default();
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
/// Unlike [`Manager::new`], this installs no rustls crypto provider: for `rediss://`, install
/// one first when the application's dependencies enable more than one.
impl From<deadpool_redis::Manager> for Manager {
    fn from(inner: deadpool_redis::Manager) -> Self {
        Self {
            inner,
            failures: Arc::default(),
            started: Instant::now(),
            trust_window: AtomicU64::new(millis(DEFAULT_TRUST_WINDOW)),
        }
    }
}

impl Manager {
    /// Sets how long after a command it completed a connection is handed out again without a
    /// health check: the store's `trust_window` setting, which the store sets when built.
    pub(crate) fn set_trust_window(&self, window: Duration) {
        self.trust_window.store(millis(window), Ordering::Release);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = RedisError;

    async fn create(&self) -> Result<Connection, RedisError> {
        let inner = managed::Manager::create(&self.inner).await?;
        let health = Arc::new(Health {
            started: self.started,
            proven_at: AtomicU64::new(0),
            proven_after_failures: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            pool_failures: Arc::clone(&self.failures),
        });
        health.prove();
        Ok(Connection { inner, health })
    }

    async fn recycle(&self, conn: &mut Connection, metrics: &Metrics) -> RecycleResult<RedisError> {
        if conn.health.broken.load(Ordering::Acquire) {
            return Err(RecycleError::message("the connection failed"));
        }
        if conn
            .health
            .is_trusted(self.trust_window.load(Ordering::Acquire))
        {
            return Ok(());
        }
        managed::Manager::recycle(&self.inner, &mut conn.inner, metrics).await?;
        conn.health.prove();
        Ok(())
    }
}

/// A pooled multiplexed Redis connection and what is known of its health.
pub struct Connection {
    inner: MultiplexedConnection,
    health: Arc<Health>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A handle on this connection for one request, which shares it with other requests.
    pub(crate) fn share(&self) -> SharedConnection {
        SharedConnection {
            inner: self.inner.clone(),
            health: Arc::clone(&self.health),
        }
    }
}

/// The health of one connection, shared by the pool's copy and the requests using it.
#[derive(Debug)]
struct Health {
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

    fn prove(&self) {
        self.proven_after_failures.store(
            self.pool_failures.load(Ordering::Acquire),
            Ordering::Release,
        );
        self.proven_at.store(self.now(), Ordering::Release);
    }

    /// Proven within the last `window` milliseconds, and no connection of the pool failed
    /// since.
    fn is_trusted(&self, window: u64) -> bool {
        let age = self
            .now()
            .saturating_sub(self.proven_at.load(Ordering::Acquire));
        let failures = self.pool_failures.load(Ordering::Acquire);
        age < window && self.proven_after_failures.load(Ordering::Acquire) == failures
    }

    fn fail(&self) {
        self.pool_failures.fetch_add(1, Ordering::AcqRel);
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

/// One request's handle on a pooled connection.
pub(crate) struct SharedConnection {
    inner: MultiplexedConnection,
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
    /// Marks a command as sent on this connection, until [`InFlight::settle`].
    pub(crate) fn in_flight(&self) -> InFlight {
        InFlight(Some(Arc::clone(&self.health)))
    }

    /// Records how a command went, so the pool knows whether to trust this connection.
    pub(crate) fn record(&self, outcome: Outcome<'_>) {
        match outcome {
            Outcome::Answered => self.health.prove(),
            // An error reply (e.g. NOSCRIPT): the connection itself works.
            Outcome::Failed(err) if !condemns_connection(err) => self.health.prove(),
            Outcome::Failed(_) => {
                self.health.broken.store(true, Ordering::Release);
                self.health.fail();
            }
            // Slow, perhaps gone: every connection must prove itself before it is used again.
            Outcome::TimedOut => self.health.fail(),
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

impl ConnectionLike for SharedConnection {
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

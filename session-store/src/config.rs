//! Store settings and the builder that sets them.

use std::time::Duration;

use deadpool::{Runtime, managed::Timeouts};
use redis::IntoConnectionInfo;

use crate::{
    RedisSessionStore, StoreError,
    pool::{Manager, Pool},
};

/// The settings a store runs with; see [`RedisSessionStoreBuilder`] for each one's meaning.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) key_prefix: String,
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_timeout: Duration,
    pub(crate) max_state_size: usize,
    pub(crate) pool_timeouts: Timeouts,
    pub(crate) command_timeout: Duration,
    pub(crate) when_unavailable: WhenUnavailable,
}

impl Config {
    /// The most one store operation may take, pool checkouts, health checks, reconnects and
    /// commands included: a budget of one wait, one connect, one health check and one command.
    /// An operation that needs more steps (a retried script, a second command) shares it.
    pub(crate) fn deadline(&self) -> Duration {
        let Timeouts {
            wait,
            create,
            recycle,
        } = self.pool_timeouts;
        [wait, create, recycle]
            .into_iter()
            .flatten()
            .fold(self.command_timeout, |total, step| total + step)
    }
}

/// What a request gets when its session cannot be loaded because Redis is unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenUnavailable {
    /// The load fails; behind [`TrackChanges`](crate::TrackChanges) the request gets
    /// `503 Service Unavailable` with `Retry-After`.
    #[default]
    Fail,
    /// A request with a safe method (`GET`, `HEAD`, `OPTIONS`) goes on as if it had no
    /// session, and its cookie is left alone: every visitor is anonymous until Redis is back,
    /// and then logged in again. Such a request cannot write a session (it answers `503`), and
    /// other methods (a logout, a form) fail as with [`Fail`](Self::Fail): what they did to a
    /// session that was never loaded would be lost.
    ///
    /// Only behind [`TrackChanges`](crate::TrackChanges), which tells the store the method;
    /// elsewhere this acts as [`Fail`](Self::Fail). For read-mostly sites whose anonymous pages
    /// are safe for anyone to see; never when the session holds restrictions (a ban, a pending
    /// second factor, a forced password change), since an anonymous request does not carry
    /// them.
    Anonymous,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            key_prefix: "session:".to_owned(),
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 60 * 60),
            max_state_size: 64 * 1024,
            pool_timeouts: Timeouts {
                wait: Some(Duration::from_secs(1)),
                create: Some(Duration::from_secs(1)),
                recycle: Some(Duration::from_secs(1)),
            },
            command_timeout: Duration::from_secs(1),
            when_unavailable: WhenUnavailable::Fail,
        }
    }
}

/// Builds a [`RedisSessionStore`] with settings other than the defaults.
///
/// ```
/// use std::time::Duration;
///
/// use session_store::RedisSessionStore;
///
/// # fn main() -> Result<(), session_store::StoreError> {
/// let store = RedisSessionStore::builder()
///     .key_prefix("shop:")
///     .idle_timeout(Duration::from_secs(15 * 60))
///     .absolute_timeout(Duration::from_secs(8 * 60 * 60))
///     .build_with_url("redis://127.0.0.1:6379")?;
/// # Ok(())
/// # }
/// ```
#[must_use]
#[derive(Debug, Clone, Default)]
pub struct RedisSessionStoreBuilder {
    config: Config,
}

impl RedisSessionStoreBuilder {
    /// Prefix of every Redis key the store writes (default `"session:"`). Give each application
    /// sharing a Redis its own prefix.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// How long a session lives without being used (default 30 minutes). Every load slides it.
    ///
    /// This, not actix-session's `session_ttl`, is the lifetime of the state in Redis.
    ///
    /// # Panics
    /// If `timeout` is under one millisecond (Redis cannot expire a key sooner) or over 100
    /// years.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = session_timeout("idle_timeout", timeout);
        self
    }

    /// How long a session lives after it was created, however active (default 12 hours).
    ///
    /// # Panics
    /// If `timeout` is under one millisecond or over 100 years.
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.config.absolute_timeout = session_timeout("absolute_timeout", timeout);
        self
    }

    /// The largest session state accepted, in bytes of entry names plus values (default 64 KiB).
    /// A larger state is refused with [`StoreError::StateTooLarge`] and nothing is written.
    pub fn max_state_size(mut self, bytes: usize) -> Self {
        self.config.max_state_size = bytes;
        self
    }

    /// How long to wait for a free pooled connection (default 1 s).
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.config.pool_timeouts.wait = Some(timeout);
        self
    }

    /// How long connecting to Redis may take (default 1 s).
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.config.pool_timeouts.create = Some(timeout);
        self
    }

    /// How long the pool's health check of a connection may take (default 1 s).
    pub fn recycle_timeout(mut self, timeout: Duration) -> Self {
        self.config.pool_timeouts.recycle = Some(timeout);
        self
    }

    /// How long Redis may take to answer one command (default 1 s).
    ///
    /// No store operation takes longer than the wait, create, recycle and command timeouts
    /// added up (its budget): past that, it fails with [`StoreError::Deadline`].
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.config.command_timeout = timeout;
        self
    }

    /// What a request gets when Redis is unavailable as its session is loaded (default
    /// [`WhenUnavailable::Fail`]).
    pub fn when_unavailable(mut self, choice: WhenUnavailable) -> Self {
        self.config.when_unavailable = choice;
        self
    }

    /// Builds a store on an existing pool, e.g.
    /// `Pool::builder(Manager::new(url)?).max_size(32).runtime(Runtime::Tokio1).build()?`.
    ///
    /// The pool must have been built with a runtime (`Runtime::Tokio1`), since the store applies
    /// its pool timeouts to every checkout; without one each operation fails with
    /// [`StoreError::PoolWithoutRuntime`].
    pub fn build(self, pool: Pool) -> RedisSessionStore {
        RedisSessionStore::from_parts(pool, self.config)
    }

    /// Builds a store on a new pool for `url` (`redis://`, `rediss://` or `redis+unix://`).
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] when the URL cannot be used.
    pub fn build_with_url(self, url: &str) -> Result<RedisSessionStore, StoreError> {
        self.build_with_connection_info(url)
    }

    /// Builds a store on a new pool for connection settings that a URL cannot carry, such as
    /// the private CA of a `redis::Client::build_with_tls` (pass its `get_connection_info()`).
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] when the settings cannot be used.
    pub fn build_with_connection_info(
        self,
        info: impl IntoConnectionInfo,
    ) -> Result<RedisSessionStore, StoreError> {
        let manager = Manager::new(info).map_err(StoreError::InvalidUrl)?;
        let pool = Pool::builder(manager)
            .runtime(Runtime::Tokio1)
            .timeouts(self.config.pool_timeouts)
            .build()?;
        Ok(self.build(pool))
    }
}

/// The longest idle timeout or lifetime accepted: far beyond any session, and small enough for
/// Redis's millisecond expiry arithmetic and Lua's doubles.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

fn session_timeout(setting: &str, timeout: Duration) -> Duration {
    assert!(
        (Duration::from_millis(1)..=LONGEST_TIMEOUT).contains(&timeout),
        "{setting} must be between one millisecond and 100 years, got {timeout:?}"
    );
    timeout
}

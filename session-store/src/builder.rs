//! [`RedisSessionStoreBuilder`]: the store's settings, each with its default, and the three
//! ways to build a store (on a URL, on a [`Manager`], on a pool).

use std::time::Duration;

use deadpool::Runtime;

use crate::{
    backend::pool::{Manager, Pool},
    config::{Config, LegacySessions, ReplicaAcks, WhenUnavailable},
    error::StoreError,
    store::RedisSessionStore,
};

/// The store's constructors: the defaults, or a builder for other settings.
impl RedisSessionStore {
    /// A store with the default settings on an existing pool (built with `Runtime::Tokio1`).
    pub fn new(pool: Pool) -> Self {
        Self::builder()
            .build_with_pool(pool)
            .expect("the default settings are valid")
    }

    /// A store with the default settings on a new pool for `url`.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] when the URL cannot be used.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        Self::builder().build_with_url(url)
    }

    /// A builder to choose settings other than the defaults.
    pub fn builder() -> RedisSessionStoreBuilder {
        RedisSessionStoreBuilder::default()
    }
}

/// Builds a [`RedisSessionStore`] with settings other than the defaults.
///
/// Settings are checked when the store is built: one the store cannot work with (a zero
/// timeout, say) is a [`StoreError::InvalidSetting`] naming it.
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

    /// How long a session lives without being used (default 30 minutes), between one
    /// millisecond and 100 years. Every load slides it.
    ///
    /// This, not actix-session's `session_ttl`, is the lifetime of the state in Redis. It may
    /// be longer than the absolute timeout, which then wins.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// How long a session lives after it was created, however active (default 12 hours),
    /// between one millisecond and 100 years.
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.config.absolute_timeout = timeout;
        self
    }

    /// The largest session state accepted, in bytes of entry names plus values as stored (a
    /// [sealed](Self::seal_entries) value with its 30 bytes of sealing; default 64 KiB, at
    /// least 1). A larger state is refused with [`StoreError::StateTooLarge`] and nothing is
    /// written.
    pub fn max_state_size(mut self, bytes: usize) -> Self {
        self.config.max_state_size = bytes;
        self
    }

    /// How long to wait for a free pooled connection (default 1 s; more than zero).
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.config.pool_timeouts.wait = Some(timeout);
        self
    }

    /// How long connecting to Redis may take (default 1 s; more than zero).
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.config.pool_timeouts.create = Some(timeout);
        self
    }

    /// How long the pool's health check of a connection may take (default 1 s; more than zero).
    pub fn recycle_timeout(mut self, timeout: Duration) -> Self {
        self.config.pool_timeouts.recycle = Some(timeout);
        self
    }

    /// How long Redis may take to answer one command (default 1 s; more than zero).
    ///
    /// No store operation takes longer than the wait, create, recycle and command timeouts
    /// added up (its budget): past that, it fails with [`StoreError::Deadline`].
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.config.command_timeout = timeout;
        self
    }

    /// How long after a command it completed a pooled connection is handed out again without a
    /// health check (default 1 s). Within it, and while no connection of the pool has failed
    /// since, a checkout costs no round trip; after it, the connection proves itself with
    /// `UNWATCH` + `PING` first. Zero checks every time.
    ///
    /// It applies to the pool the store makes (a [`Manager`] given to
    /// [`build_with_manager`](Self::build_with_manager) keeps its own unless this is set). A
    /// pool given to [`build_with_pool`](Self::build_with_pool) was made with its manager's
    /// ([`Manager::trust_window`]): setting this too is refused, rather than ignored.
    pub fn trust_window(mut self, window: Duration) -> Self {
        self.config.trust_window = Some(window);
        self
    }

    /// The session entry that holds the signed-in user (default: none). Naming it tells the
    /// store which sessions belong to somebody:
    ///
    /// - a session without this entry lives only for the
    ///   [`anonymous_idle_timeout`](Self::anonymous_idle_timeout) without use, so that visitors
    ///   who never log in cannot fill Redis for the whole idle timeout;
    /// - a renewal ([`Session::renew`](actix_session::Session::renew)) that changes this
    ///   entry's value (a login, a switch of user) starts a new absolute lifetime; any other
    ///   renewal keeps the session's creation time.
    ///
    /// Without it, every session has the idle timeout and every renewal keeps its creation
    /// time.
    pub fn user_entry(mut self, name: impl Into<String>) -> Self {
        self.config.user_entry = Some(name.into());
        self
    }

    /// How long a session without a user lives without being used (default 5 minutes, and
    /// never longer than the [`idle_timeout`](Self::idle_timeout)), once a
    /// [`user_entry`](Self::user_entry) is named. The switch between the two timeouts rides
    /// on the write that adds or removes the user: no extra round trip.
    pub fn anonymous_idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.anonymous_idle_timeout = timeout;
        self
    }

    /// The most sessions one user may hold at once (default 100, at least 1), once a
    /// [`user_entry`](Self::user_entry) is named. A login beyond it ends the user's oldest
    /// sessions (by creation, to the millisecond) before the new one is written, announcing each as
    /// [`Evicted`](crate::features::events::SessionEventKind::Evicted): so a user's index stays small, and a
    /// password that leaked cannot be used to fill Redis with one user's sessions. Logins
    /// that overlap may leave the user over the limit by as many as overlapped, until the
    /// next login.
    pub fn max_sessions_per_user(mut self, sessions: usize) -> Self {
        self.config.max_sessions_per_user = sessions;
        self
    }

    /// How far in the future a session's creation time may lie and the session still count as
    /// live (default 5 minutes): instances whose clocks run ahead of each other's by up to this
    /// much accept each other's sessions. A creation time further ahead (a clock far off, a
    /// hand-edited hash) ends the session, so no session outlives its absolute lifetime by
    /// more than this.
    pub fn clock_skew_tolerance(mut self, tolerance: Duration) -> Self {
        self.config.clock_skew_tolerance = tolerance;
        self
    }

    /// The session entries that [`sessions_of`](RedisSessionStore::sessions_of) shows of each
    /// of a user's sessions (default: none), e.g. a user agent the application keeps at login.
    pub fn exposed_entries<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.config.exposed_entries = names.into_iter().map(Into::into).collect();
        self
    }

    /// Whether entry values are sealed (default: on): each encrypted with AES-256-GCM under a
    /// key derived from the session id, which Redis never holds (only its digest) and only
    /// the session's cookie carries, bound to its session and entry. A Redis dump, a replica,
    /// `MONITOR` or the application's configuration then reads none of them. The
    /// [`user_entry`](Self::user_entry) and the [`exposed_entries`](Self::exposed_entries)
    /// stay in clear: the store reads them without a cookie. Each sealed value takes 30 bytes
    /// more, which the [size limit](Self::max_state_size) counts.
    ///
    /// Turn it off to inspect sessions in Redis. Either way the store reads both kinds of
    /// values, so it can be switched either way with nobody logged out; values in clear are
    /// sealed when their session is next written.
    pub fn seal_entries(mut self, seal: bool) -> Self {
        self.config.seal_entries = seal;
        self
    }

    /// Publishes the session lifecycle (created, renewed, deleted, revoked) as JSON messages
    /// on the channel `{prefix}events` (default: off), each in the round trip of the write it
    /// reports; [`RedisSessionStore::events`] subscribes to them. See
    /// [`SessionEvent`](crate::features::events::SessionEvent).
    pub fn publish_events(mut self, publish: bool) -> Self {
        self.config.publish_events = publish;
        self
    }

    /// A label for this instance of the application in the events it publishes (default:
    /// none), e.g. its host and port.
    pub fn instance_label(mut self, label: impl Into<String>) -> Self {
        self.config.instance_label = Some(label.into());
        self
    }

    /// The `store` label on the store's metrics, to tell several stores of one process apart
    /// (default: the key prefix). The pool the store makes counts its health checks under it
    /// too; a pool given to [`build_with_pool`](Self::build_with_pool) counts them under its
    /// manager's ([`Manager::metrics_label`]), so give both the same label.
    pub fn metrics_label(mut self, label: impl Into<String>) -> Self {
        self.config.metrics_label = Some(label.into());
        self
    }

    /// Makes every write (a login, a change, a logout) wait until `replicas` replicas have it,
    /// for at most `timeout`, with `WAIT` in the write's own round trip (default: writes do not
    /// wait). A write that fewer replicas acknowledge in time fails as unavailable
    /// ([`StoreError::NotReplicated`], `503` behind [`TrackChanges`](crate::request::middleware::TrackChanges)),
    /// although the primary has it: it was not made durable. So an acknowledged login survives
    /// the failover of its primary, and an acknowledged logout is not undone by one.
    ///
    /// Redis replicates asynchronously; `WAIT` only bounds what a failover can lose, and costs
    /// each write a replica's round trip. `timeout` must be shorter than the command timeout.
    pub fn min_replica_acks(mut self, replicas: u32, timeout: Duration) -> Self {
        self.config.replica_acks = Some(ReplicaAcks { replicas, timeout });
        self
    }

    /// What a request gets when Redis is unavailable as its session is loaded (default
    /// [`WhenUnavailable::Fail`]).
    pub fn when_unavailable(mut self, choice: WhenUnavailable) -> Self {
        self.config.when_unavailable = choice;
        self
    }

    /// Reads and writes the sessions of actix-session's own `RedisSessionStore` (0.11): the
    /// setting for switching from it in a rolling deploy with nobody logged out (default: none;
    /// such cookies are no session). First deploy with [`LegacySessions::interoperate`] while
    /// old instances still run, then with [`LegacySessions::migrate`] once none is left, and
    /// drop the setting when the old store's TTL has passed since; the README's "Switching
    /// from actix-session's Redis store" tells each step.
    pub fn legacy_sessions(mut self, sessions: LegacySessions) -> Self {
        self.config.legacy = Some(sessions);
        self
    }

    /// Keeps up to `max_sessions` recently read sessions in this instance's memory and serves
    /// reads of them with no Redis command, for as long as Redis says none of them changed
    /// (default: off). See the crate README's "Near cache" for when to turn it on.
    ///
    /// Each instance tracks the session keys on every server that holds sessions (Redis
    /// client-side caching, `CLIENT TRACKING ... BCAST`, on a thread of its own): any change of
    /// a session on any instance (a write, a logout, a revocation, an expiry) drops every
    /// instance's copy. While that link is down, or silent for more than 400 ms, nothing is
    /// served from memory. A session of more than 4 KiB takes the room of several. The
    /// expiry then slides coarsely (see [`slide_granularity`](Self::slide_granularity)).
    ///
    /// The store must know where Redis is: build it from a URL or a [`Manager`] made by
    /// [`Manager::new`], [`Manager::cluster`] or [`Manager::sentinel`]. The servers must
    /// speak RESP3 (Redis 6 or later).
    pub fn near_cache(mut self, max_sessions: usize) -> Self {
        self.config.near_cache = Some(max_sessions);
        self
    }

    /// With the [near cache](Self::near_cache) on, how often at most a session's idle expiry
    /// slides: a read slides it only once it has been this long since the last slide
    /// (default: a sixteenth of the idle timeout of the session's class, and never more than
    /// that timeout). Each slide drops every instance's copy, so sliding on every read would
    /// leave nothing to serve. A session lives from `idle_timeout` up to `idle_timeout` plus
    /// this after its last request, and its copies are served until its next slide is due.
    pub fn slide_granularity(mut self, granularity: Duration) -> Self {
        self.config.slide_granularity = Some(granularity);
        self
    }

    /// Builds a store on an existing pool, e.g.
    /// `Pool::builder(Manager::new(url)?).max_size(32).runtime(Runtime::Tokio1).build()?`.
    ///
    /// The pool's manager keeps its own trust window and metrics label
    /// ([`Manager::trust_window`], [`Manager::metrics_label`]), set before the pool was built:
    /// this builder's [`trust_window`](Self::trust_window) is refused here, and its
    /// [`metrics_label`](Self::metrics_label) labels the store's own metrics only.
    ///
    /// The pool must have been built with a runtime (`Runtime::Tokio1`), since the store applies
    /// its pool timeouts to every checkout; without one each operation fails with
    /// [`StoreError::PoolWithoutRuntime`].
    ///
    /// # Errors
    /// [`StoreError::InvalidSetting`] when a setting is out of its range, or when
    /// [`trust_window`](Self::trust_window) is set.
    pub fn build_with_pool(self, pool: Pool) -> Result<RedisSessionStore, StoreError> {
        if self.config.trust_window.is_some() {
            return Err(StoreError::InvalidSetting {
                setting: "trust_window",
                problem: "applies to the pools the store makes: for a pool of your own, \
                          set it on its Manager (`Manager::trust_window`)",
            });
        }
        self.finish(pool)
    }

    /// The store on `pool`, once its settings are checked.
    fn finish(self, pool: Pool) -> Result<RedisSessionStore, StoreError> {
        self.config.validate()?;
        if self.config.near_cache.is_some() && !pool.manager().knows_servers() {
            return Err(StoreError::InvalidSetting {
                setting: "near_cache",
                problem: "needs the servers' addresses: build the store from a URL, or from \
                          a Manager made by Manager::new, Manager::cluster or Manager::sentinel",
            });
        }
        Ok(RedisSessionStore::from_parts(pool, self.config))
    }

    /// Builds a store on a new pool for `url` (`redis://`, `rediss://` or `redis+unix://`).
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] when the URL cannot be used, [`StoreError::InvalidSetting`]
    /// when a setting is out of its range.
    pub fn build_with_url(self, url: &str) -> Result<RedisSessionStore, StoreError> {
        self.build_with_manager(Manager::new(url)?)
    }

    /// Builds a store on a new pool for any other way of reaching Redis: a Redis Cluster
    /// ([`Manager::cluster`]), a primary behind Sentinel ([`Manager::sentinel`],
    /// [`Manager::sentinel_with`] for its password or TLS), or connection settings that a URL
    /// cannot carry ([`Manager::new`] with a `ConnectionInfo`, such as the private CA of a
    /// `redis::Client::build_with_tls`).
    ///
    /// On a cluster, each request's commands touch one key, so one hash slot, and go to the
    /// primary that owns it; redis-rs follows the cluster through resharding and failovers (see
    /// [`min_replica_acks`](Self::min_replica_acks) for logins that must survive the failover
    /// of their primary). Behind Sentinel, the store follows the primary the sentinels name
    /// after a failover, with no restart.
    ///
    /// ```no_run
    /// use session_store::{Manager, RedisSessionStore};
    ///
    /// # fn main() -> Result<(), session_store::StoreError> {
    /// let cluster = RedisSessionStore::builder().build_with_manager(Manager::cluster([
    ///     "redis://10.0.0.1:7000",
    ///     "redis://10.0.0.2:7000",
    ///     "redis://10.0.0.3:7000",
    /// ])?)?;
    /// let sentinel = RedisSessionStore::builder().build_with_manager(Manager::sentinel(
    ///     ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"],
    ///     "sessions",
    /// )?)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`StoreError::InvalidSetting`] when a setting is out of its range.
    pub fn build_with_manager(self, manager: Manager) -> Result<RedisSessionStore, StoreError> {
        let mut manager = manager.metrics_label(self.config.metrics_label());
        if let Some(window) = self.config.trust_window {
            manager = manager.trust_window(window);
        }
        let pool = Pool::builder(manager)
            .runtime(Runtime::Tokio1)
            .timeouts(self.config.pool_timeouts)
            .build()
            .expect("a pool with a runtime always builds");
        self.finish(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LONGEST_LIFETIME;

    fn refused(builder: RedisSessionStoreBuilder) -> &'static str {
        match builder.config.validate() {
            Err(StoreError::InvalidSetting { setting, .. }) => setting,
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        let builder = RedisSessionStoreBuilder::default;
        assert_eq!(refused(builder().max_state_size(0)), "max_state_size");
        assert_eq!(
            refused(builder().command_timeout(Duration::ZERO)),
            "command_timeout"
        );
        assert_eq!(
            refused(builder().wait_timeout(Duration::ZERO)),
            "wait_timeout"
        );
        assert_eq!(
            refused(builder().create_timeout(Duration::ZERO)),
            "create_timeout"
        );
        assert_eq!(
            refused(builder().recycle_timeout(Duration::ZERO)),
            "recycle_timeout"
        );
        assert_eq!(
            refused(builder().idle_timeout(Duration::ZERO)),
            "idle_timeout"
        );
        let forever = LONGEST_LIFETIME + Duration::from_secs(1);
        assert_eq!(
            refused(builder().absolute_timeout(forever)),
            "absolute_timeout"
        );
    }

    #[test]
    fn an_idle_timeout_longer_than_the_lifetime_is_allowed() {
        let config = RedisSessionStoreBuilder::default()
            .idle_timeout(Duration::from_secs(60))
            .absolute_timeout(Duration::from_secs(30))
            .trust_window(Duration::ZERO)
            .config;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_deadline_adds_up_the_timeouts() {
        let config = RedisSessionStoreBuilder::default()
            .wait_timeout(Duration::from_millis(1))
            .create_timeout(Duration::from_millis(20))
            .recycle_timeout(Duration::from_millis(300))
            .command_timeout(Duration::from_millis(4000))
            .config;
        assert_eq!(config.deadline(), Duration::from_millis(4321));
    }
}

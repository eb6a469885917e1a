//! The settings a store runs with, their defaults and their ranges; the builder that sets
//! them is [`builder`](crate::builder).

use std::{fmt, sync::Arc, time::Duration};

use deadpool::managed::Timeouts;

use crate::error::StoreError;

/// The settings a store runs with; see [`RedisSessionStoreBuilder`](crate::builder::RedisSessionStoreBuilder) for each one's meaning.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) key_prefix: String,
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_timeout: Duration,
    pub(crate) max_state_size: usize,
    pub(crate) pool_timeouts: Timeouts,
    pub(crate) command_timeout: Duration,
    /// Set for the pools the store makes; `None` leaves a manager's own (1 s by default).
    pub(crate) trust_window: Option<Duration>,
    pub(crate) when_unavailable: WhenUnavailable,
    pub(crate) user_entry: Option<String>,
    pub(crate) anonymous_idle_timeout: Duration,
    pub(crate) max_sessions_per_user: usize,
    pub(crate) clock_skew_tolerance: Duration,
    pub(crate) replica_acks: Option<ReplicaAcks>,
    pub(crate) exposed_entries: Vec<String>,
    pub(crate) seal_entries: bool,
    pub(crate) publish_events: bool,
    pub(crate) instance_label: Option<String>,
    pub(crate) metrics_label: Option<String>,
    pub(crate) legacy: Option<LegacySessions>,
    /// How many sessions the near cache holds; `None`: no near cache.
    pub(crate) near_cache: Option<usize>,
    /// With the near cache, how much longer than its idle timeout a session may live;
    /// `None`: a sixteenth of the idle timeout.
    pub(crate) slide_granularity: Option<Duration>,
}

/// How many replicas must have a write before it counts, and how long to wait for them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplicaAcks {
    pub(crate) replicas: u32,
    pub(crate) timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 60 * 60),
            max_state_size: 64 * 1024,
            pool_timeouts: Timeouts {
                wait: Some(Duration::from_secs(1)),
                create: Some(Duration::from_secs(1)),
                recycle: Some(Duration::from_secs(1)),
            },
            command_timeout: Duration::from_secs(1),
            trust_window: None,
            when_unavailable: WhenUnavailable::Fail,
            user_entry: None,
            anonymous_idle_timeout: Duration::from_secs(5 * 60),
            max_sessions_per_user: 100,
            clock_skew_tolerance: Duration::from_secs(5 * 60),
            replica_acks: None,
            exposed_entries: Vec::new(),
            seal_entries: true,
            publish_events: false,
            instance_label: None,
            metrics_label: None,
            legacy: None,
            near_cache: None,
            slide_granularity: None,
        }
    }
}

/// The key prefix, and so the metrics label, of a store or pool that sets none.
pub(crate) const DEFAULT_KEY_PREFIX: &str = "session:";

/// The longest idle timeout or lifetime accepted: far beyond any session, and small enough for
/// Redis's millisecond expiry arithmetic and Lua's doubles.
pub(crate) const LONGEST_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

impl Config {
    /// The most one store operation may take, pool checkouts, health checks, reconnects and
    /// commands included: a budget of one wait, one connect, one health check and one command.
    /// An operation that needs more steps (a script sent again whole, a second command) shares
    /// it.
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

    /// The `store` label of its metrics.
    pub(crate) fn metrics_label(&self) -> String {
        self.metrics_label
            .clone()
            .unwrap_or_else(|| self.key_prefix.clone())
    }

    /// Whether the store reads entry `name` without a session's cookie: the user entry (the
    /// index, revocation) and the exposed entries (the sessions list). These stay in clear.
    pub(crate) fn reads_without_cookie(&self, name: &str) -> bool {
        self.user_entry.as_deref() == Some(name) || self.exposed_entries.iter().any(|e| e == name)
    }

    /// With the near cache on, how far apart two slides of the expiry of a session idle for
    /// `idle` may be: how much longer than `idle` it may live. Zero without the near cache.
    pub(crate) fn slide_granularity(&self, idle: Duration) -> Duration {
        if self.near_cache.is_none() {
            return Duration::ZERO;
        }
        self.slide_granularity.unwrap_or(idle / 16).min(idle)
    }

    /// Refuses settings the store cannot work with, naming the first such setting.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let lifetimes = [
            ("idle_timeout", self.idle_timeout),
            ("absolute_timeout", self.absolute_timeout),
            ("anonymous_idle_timeout", self.anonymous_idle_timeout),
        ];
        for (setting, lifetime) in lifetimes {
            if !(Duration::from_millis(1)..=LONGEST_LIFETIME).contains(&lifetime) {
                return Err(invalid(
                    setting,
                    "must be between one millisecond and 100 years",
                ));
            }
        }
        let Timeouts {
            wait,
            create,
            recycle,
        } = self.pool_timeouts;
        let timeouts = [
            ("wait_timeout", wait),
            ("create_timeout", create),
            ("recycle_timeout", recycle),
            ("command_timeout", Some(self.command_timeout)),
        ];
        for (setting, timeout) in timeouts {
            if timeout.is_none_or(|timeout| timeout.is_zero()) {
                return Err(invalid(setting, "must be longer than zero"));
            }
        }
        if self.near_cache == Some(0) {
            return Err(invalid("near_cache", "must hold at least one session"));
        }
        if self
            .slide_granularity
            .is_some_and(|granularity| granularity.is_zero() || granularity > LONGEST_LIFETIME)
        {
            return Err(invalid(
                "slide_granularity",
                "must be between one millisecond and 100 years",
            ));
        }
        if self.clock_skew_tolerance > LONGEST_LIFETIME {
            return Err(invalid("clock_skew_tolerance", "must be at most 100 years"));
        }
        if self.max_sessions_per_user == 0 {
            return Err(invalid(
                "max_sessions_per_user",
                "must allow at least one session",
            ));
        }
        if self.max_state_size == 0 {
            return Err(invalid("max_state_size", "must be at least one byte"));
        }
        if let Some(acks) = self.replica_acks {
            if acks.replicas == 0 {
                return Err(invalid(
                    "min_replica_acks",
                    "must ask for at least one replica",
                ));
            }
            if acks.timeout.is_zero() || acks.timeout >= self.command_timeout {
                return Err(invalid(
                    "min_replica_acks",
                    "must wait longer than zero and less than the command timeout",
                ));
            }
        }
        if self.user_entry.as_deref() == Some("") {
            return Err(invalid("user_entry", "must name an entry"));
        }
        Ok(())
    }
}

fn invalid(setting: &'static str, problem: &'static str) -> StoreError {
    StoreError::InvalidSetting { setting, problem }
}

/// What a request gets when its session cannot be loaded because Redis is unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenUnavailable {
    /// The load fails; behind [`TrackChanges`](crate::request::middleware::TrackChanges) the request gets
    /// `503 Service Unavailable` with `Retry-After`.
    #[default]
    Fail,
    /// A request with a safe method (`GET`, `HEAD`, `OPTIONS`) goes on as if it had no
    /// session, and its cookie is left alone: every visitor is anonymous until Redis is back,
    /// and then logged in again. Such a request cannot write a session (it answers `503`), and
    /// other methods (a logout, a form) fail as with [`Fail`](Self::Fail): what they did to a
    /// session that was never loaded would be lost.
    ///
    /// Only behind [`TrackChanges`](crate::request::middleware::TrackChanges), which tells the store the method;
    /// elsewhere this acts as [`Fail`](Self::Fail). For read-mostly sites whose anonymous pages
    /// are safe for anyone to see; never when the session holds restrictions (a ban, a pending
    /// second factor, a forced password change), since an anonymous request does not carry
    /// them.
    Anonymous,
}

/// Sessions of actix-session's own `RedisSessionStore` (0.11), and what the store does with
/// them: the setting that switches an application from that store without logging anyone out
/// (see [`legacy_sessions`](crate::builder::RedisSessionStoreBuilder::legacy_sessions)).
///
/// ```
/// use session_store::{LegacySessions, RedisSessionStore};
///
/// # fn main() -> Result<(), session_store::StoreError> {
/// // The old store was built with `.cache_keygen(|key| format!("shop:{key}"))`.
/// let store = RedisSessionStore::builder()
///     .legacy_sessions(LegacySessions::interoperate().key_function(|key| format!("shop:{key}")))
///     .build_with_url("redis://127.0.0.1:6379")?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct LegacySessions {
    pub(crate) step: LegacyStep,
    pub(crate) key_function: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

/// The two steps of a switch from actix-session's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LegacyStep {
    /// Old and new instances serve the same users side by side: old sessions stay where the
    /// old store keeps them and are read and written there, in its format, and sessions
    /// created now are created there too, so that an old instance can read them.
    Interoperate,
    /// No old instance is left: a session found only where the old store kept it moves to
    /// this store's layout on its first request (its old key deleted, its user indexed), and
    /// new sessions are this store's own.
    Migrate,
}

impl LegacySessions {
    /// The first step: old and new instances side by side ([`LegacyStep::Interoperate`]).
    pub fn interoperate() -> Self {
        Self::at(LegacyStep::Interoperate)
    }

    /// The second step: only new instances, moving old sessions over
    /// ([`LegacyStep::Migrate`]).
    pub fn migrate() -> Self {
        Self::at(LegacyStep::Migrate)
    }

    /// The given step, with the old store's default key function.
    pub fn at(step: LegacyStep) -> Self {
        Self {
            step,
            key_function: Arc::new(str::to_owned),
        }
    }

    /// The old store's key function: what it was given as `cache_keygen` (by default the
    /// session key itself, with no prefix).
    pub fn key_function(mut self, key: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.key_function = Arc::new(key);
        self
    }

    /// The step this setting is for.
    pub fn step(&self) -> LegacyStep {
        self.step
    }
}

impl fmt::Debug for LegacySessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacySessions")
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

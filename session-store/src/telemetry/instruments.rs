//! What the store tells an operator: counters, histograms and gauges through the `metrics`
//! facade (the application installs an exporter; without one, recording costs next to
//! nothing), and a `tracing` span per store operation.
//!
//! The metric names are kept stable for dashboards:
//!
//! - `session_store_operations_total{store, operation, outcome}`, counter;
//! - `session_store_operation_duration_seconds{store, operation}`, histogram;
//! - `session_store_pool_connections{store, state="idle|in_use"}` and
//!   `session_store_pool_waiters{store}`, gauges, read after each operation;
//! - `session_store_pool_checks_total{store, result}`, counter of the health checks sent;
//! - `session_store_state_bytes{store}`, histogram of the size of the states written;
//! - `session_store_redis_round_trips_total{store}`, counter of the round trips operations
//!   made (a read served by the near cache makes none);
//! - the near cache's, when it is on (see `near.rs`).

use std::{cell::Cell, future::Future, sync::OnceLock, time::Instant};

use metrics::{Counter, Gauge, Histogram, SharedString};
use tracing::{Instrument as _, field::Empty};

use deadpool::managed::{self, Pool};

use crate::error::{ErrorClass, StoreError};

macro_rules! span {
    ($name:literal) => {
        tracing::info_span!(
            $name,
            db.system = "redis",
            db.operation.name = Empty,
            session = Empty,
            near_cache = Empty,
            outcome = Empty,
            round_trips = Empty,
            duration_ms = Empty,
        )
    };
}

/// A store operation, as metrics and spans name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Load,
    Save,
    Update,
    UpdateTtl,
    Delete,
    Sessions,
    Revoke,
    Location,
    LoginThrottle,
    HealthCheck,
}

impl Operation {
    const COUNT: usize = 10;

    /// Whether it works on the request's own session (actix-session's `SessionStore`
    /// operations), so that its failure is the request's.
    pub(crate) fn is_the_requests(self) -> bool {
        matches!(
            self,
            Self::Load | Self::Save | Self::Update | Self::UpdateTtl | Self::Delete
        )
    }

    fn name(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Save => "save",
            Self::Update => "update",
            Self::UpdateTtl => "update_ttl",
            Self::Delete => "delete",
            Self::Sessions => "sessions",
            Self::Revoke => "revoke",
            Self::Location => "location",
            Self::LoginThrottle => "login_throttle",
            Self::HealthCheck => "health_check",
        }
    }

    fn span_name(self) -> tracing::Span {
        // Span names are static: one macro call per operation.
        match self {
            Self::Load => span!("session_store.load"),
            Self::Save => span!("session_store.save"),
            Self::Update => span!("session_store.update"),
            Self::UpdateTtl => span!("session_store.update_ttl"),
            Self::Delete => span!("session_store.delete"),
            Self::Sessions => span!("session_store.sessions"),
            Self::Revoke => span!("session_store.revoke"),
            Self::Location => span!("session_store.location"),
            Self::LoginThrottle => span!("session_store.login_throttle"),
            Self::HealthCheck => span!("session_store.health_check"),
        }
    }
}

/// How a store operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    /// A load that found no session.
    NotFound,
    Unavailable,
    TooLarge,
    /// An update lost to a logout (or a revocation) that landed first.
    Dropped,
    Error,
}

impl Outcome {
    const COUNT: usize = 6;

    fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Unavailable => "unavailable",
            Self::TooLarge => "too_large",
            Self::Dropped => "dropped",
            Self::Error => "error",
        }
    }

    fn of_error(err: &StoreError) -> Self {
        match err.class() {
            ErrorClass::Unavailable => Self::Unavailable,
            ErrorClass::TooLarge => Self::TooLarge,
            ErrorClass::Internal => Self::Error,
        }
    }
}

tokio::task_local! {
    /// Round trips of the operation under way.
    static ROUND_TRIPS: Cell<u32>;
}

/// Counts one round trip of the operation under way, for its span.
pub(crate) fn round_trip() {
    let _ = ROUND_TRIPS.try_with(|trips| trips.set(trips.get() + 1));
}

/// Records in its span that a read went to Redis though the near cache is on (a read served
/// from the cache has a span of its own, [`Instruments::near_hit`]).
pub(crate) fn near_cache_miss() {
    tracing::Span::current().record("near_cache", "miss");
}

/// Records the session an operation is about, in its span.
pub(crate) fn session(reference: &str) {
    tracing::Span::current().record("session", reference);
}

/// The store's instruments: its label, and the handles of the metrics it records, each
/// registered with the application's recorder the first time it is used (so install the
/// recorder before the first request; registering on every use would cost a lookup and label
/// copies each time).
pub(crate) struct Instruments {
    store: SharedString,
    operations: [[OnceLock<Counter>; Outcome::COUNT]; Operation::COUNT],
    durations: [OnceLock<Histogram>; Operation::COUNT],
    state_bytes: OnceLock<Histogram>,
    round_trips: OnceLock<Counter>,
    /// Idle connections, connections in use, waiters.
    pool: OnceLock<[Gauge; 3]>,
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instruments")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Instruments {
    pub(crate) fn new(store: String) -> Self {
        Self {
            store: SharedString::from(store),
            operations: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            durations: std::array::from_fn(|_| OnceLock::new()),
            state_bytes: OnceLock::new(),
            round_trips: OnceLock::new(),
            pool: OnceLock::new(),
        }
    }

    /// Runs `operation` in a span of its own and records how it went; `outcome` says how an
    /// operation that did not fail ended.
    pub(crate) async fn observe<T>(
        &self,
        operation: Operation,
        pool: &Pool<impl managed::Manager>,
        work: impl Future<Output = Result<T, StoreError>>,
        outcome: impl FnOnce(&T) -> Outcome,
    ) -> Result<T, StoreError> {
        let span = operation.span_name();
        span.record("db.operation.name", operation.name());
        let started = Instant::now();
        let (result, trips) = ROUND_TRIPS
            .scope(Cell::new(0), async {
                let result = work.await;
                (result, ROUND_TRIPS.with(Cell::get))
            })
            .instrument(span.clone())
            .await;
        let ended = result.as_ref().map_or_else(Outcome::of_error, outcome);
        self.record(operation, &span, ended, trips, started);
        self.pool(pool);
        result
    }

    /// A load served from the near cache, begun at `started`: its span and its metrics, as
    /// [`Self::observe`] records them for a load that waited for Redis.
    pub(crate) fn near_hit(&self, started: Instant) {
        let span = Operation::Load.span_name();
        span.record("db.operation.name", Operation::Load.name());
        span.record("near_cache", "hit");
        self.record(Operation::Load, &span, Outcome::Ok, 0, started);
    }

    /// Records how an operation begun at `started` ended, after `trips` round trips, in
    /// `span` and in the metrics.
    fn record(
        &self,
        operation: Operation,
        span: &tracing::Span,
        ended: Outcome,
        trips: u32,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        span.record("outcome", ended.name());
        span.record("round_trips", trips);
        if trips > 0 {
            self.round_trips
                .get_or_init(|| {
                    metrics::counter!("session_store_redis_round_trips_total", "store" => self.store.clone())
                })
                .increment(u64::from(trips));
        }
        span.record("duration_ms", elapsed.as_secs_f64() * 1000.0);
        self.operations[operation as usize][ended as usize]
            .get_or_init(|| {
                metrics::counter!(
                    "session_store_operations_total",
                    "store" => self.store.clone(),
                    "operation" => operation.name(),
                    "outcome" => ended.name(),
                )
            })
            .increment(1);
        self.durations[operation as usize]
            .get_or_init(|| {
                metrics::histogram!(
                    "session_store_operation_duration_seconds",
                    "store" => self.store.clone(),
                    "operation" => operation.name(),
                )
            })
            .record(elapsed.as_secs_f64());
    }

    /// The size of a state written.
    pub(crate) fn state_bytes(&self, bytes: usize) {
        self.state_bytes
            .get_or_init(
                || metrics::histogram!("session_store_state_bytes", "store" => self.store.clone()),
            )
            .record(bytes as f64);
    }

    /// How full the pool is now.
    fn pool(&self, pool: &Pool<impl managed::Manager>) {
        let status = pool.status();
        let idle = status.available;
        let in_use = status.size.saturating_sub(idle);
        let [idle_gauge, in_use_gauge, waiters] = self.pool.get_or_init(|| {
            let store = &self.store;
            [
                metrics::gauge!("session_store_pool_connections", "store" => store.clone(), "state" => "idle"),
                metrics::gauge!("session_store_pool_connections", "store" => store.clone(), "state" => "in_use"),
                metrics::gauge!("session_store_pool_waiters", "store" => store.clone()),
            ]
        });
        idle_gauge.set(idle as f64);
        in_use_gauge.set(in_use as f64);
        waiters.set(status.waiting as f64);
    }
}

/// A health check of a pooled connection was sent; `passed` says how it went.
pub(crate) fn health_check(store: &SharedString, passed: bool) {
    let result = if passed { "ok" } else { "failed" };
    metrics::counter!("session_store_pool_checks_total", "store" => store.clone(), "result" => result)
        .increment(1);
}

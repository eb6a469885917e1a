//! What every operation of the store works with, handed explicitly to the session rules and to
//! each feature: the backend (the way to Redis), the settings, the publisher of events, the
//! metrics; and the one way an operation runs ([`Handle::run`]).

use std::{future::Future, sync::Arc};

use crate::{
    backend::{Backend, pool::Pool},
    config::Config,
    error::StoreError,
    features::{events::Publisher, location::SlotMap},
    near::{NearCache, link},
    request::scope,
    session::{
        clock::{millis, now_millis},
        fields::SessionState,
        key::RedisKey,
        seal::OpenedValues,
    },
    telemetry::instruments::{Instruments, Operation, Outcome},
};

/// The store's parts, shared by its clones and by the features made from it.
#[derive(Debug)]
pub(crate) struct Handle {
    backend: Backend,
    config: Config,
    publisher: Option<Publisher>,
    instruments: Instruments,
    opened: OpenedValues,
    slot_map: SlotMap,
    near: Option<Arc<NearCache>>,
}

impl Handle {
    pub(crate) fn new(pool: Pool, config: Config) -> Self {
        let backend = Backend::new(pool, &config);
        let publisher = config.publish_events.then(|| Publisher {
            channel: Publisher::channel(&config.key_prefix),
            instance: config.instance_label.clone(),
        });
        let instruments = Instruments::new(config.metrics_label());
        let near = config.near_cache.map(|sessions| {
            let cache = Arc::new(NearCache::new(sessions, &config.metrics_label()));
            link::start(
                &cache,
                backend.pool().clone(),
                RedisKey::sessions_prefix(&config.key_prefix),
            );
            cache
        });
        Self {
            backend,
            config,
            publisher,
            instruments,
            opened: OpenedValues::new(),
            slot_map: SlotMap::default(),
            near,
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Where and as whom the store publishes its events, when it does.
    pub(crate) fn publisher(&self) -> Option<&Publisher> {
        self.publisher.as_ref()
    }

    /// The sealed values this instance opened lately (see [`seal`](crate::session::seal)).
    pub(crate) fn opened(&self) -> &OpenedValues {
        &self.opened
    }

    /// The near cache, when the store keeps one.
    pub(crate) fn near(&self) -> Option<&NearCache> {
        self.near.as_deref()
    }

    /// The cluster's slot map as `location` asked for it last.
    pub(crate) fn slot_map(&self) -> &SlotMap {
        &self.slot_map
    }

    pub(crate) fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    /// Runs one operation within the store's deadline, in a span of its own and counted in
    /// its metrics; `outcome` says how an operation that did not fail ended. A failed operation
    /// on the request's own session also tells the request's scope, which
    /// [`TrackChanges`](crate::request::middleware::TrackChanges) answers with a `503` or a
    /// `413`; the failure of any other (a listing, a health check) is the handler's to answer.
    ///
    /// The operation goes on the heap first: each layer around it (deadline, span, metrics)
    /// would otherwise hold a copy of it, and moving those kilobytes cost more CPU than the
    /// allocation.
    pub(crate) fn run<T>(
        &self,
        operation: Operation,
        work: impl Future<Output = Result<T, StoreError>>,
        outcome: impl FnOnce(&T) -> Outcome,
    ) -> impl Future<Output = Result<T, StoreError>> {
        let work = Box::pin(work);
        async move {
            let work = self.backend.within_deadline(work);
            let result = self
                .instruments
                .observe(operation, self.backend.pool(), work, outcome)
                .await;
            if let Err(err) = &result
                && operation.is_the_requests()
            {
                scope::note_failure(err);
            }
            result
        }
    }

    /// The value of the user entry in `state`, as stored (JSON), when the store names one.
    pub(crate) fn user_in<'a>(&self, state: &'a SessionState) -> Option<&'a str> {
        state
            .get(self.config.user_entry.as_deref()?)
            .map(String::as_str)
    }

    /// The creation times of live sessions, now: after the first bound (exclusive) and no
    /// later than the second, milliseconds since the epoch.
    pub(crate) fn born_between(&self) -> (u64, u64) {
        let now = now_millis();
        (
            now.saturating_sub(millis(self.config.absolute_timeout)),
            now.saturating_add(millis(self.config.clock_skew_tolerance)),
        )
    }

    /// Whether a session created at `created` is within its absolute lifetime now.
    pub(crate) fn within_lifetime(&self, created: u64) -> bool {
        let (after, by) = self.born_between();
        after < created && created <= by
    }
}

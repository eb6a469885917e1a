//! The per-request scope: what the store learns about one request while it runs inside
//! [`TrackChanges`](crate::request::middleware::TrackChanges), kept in a tokio task-local around actix-session's
//! middleware.
//!
//! actix-session hands the store each operation on its own, with no sign of which request it
//! serves. The scope carries what connects them: the state as loaded (so `update` writes only
//! what changed and `update_ttl` knows the load slid the expiry), whether the request's method
//! is safe (only such a request may go on anonymous), and how a failed operation failed (so the
//! middleware can answer `503` or `413` instead of actix-session's `500`).

use std::{
    cell::RefCell,
    future::Future,
    sync::{Arc, Once},
};

use actix_web::{ResponseError as _, http::StatusCode};

use crate::{
    error::StoreError, session::fields::SessionState, session::key::RedisKey,
    telemetry::failure_log::Chain,
};

tokio::task_local! {
    static SCOPE: RefCell<RequestScope>;
}

/// What the store learns about one request while it runs.
#[derive(Default)]
struct RequestScope {
    /// Whether the request's method is safe (`GET`, `HEAD`, ...).
    safe: bool,
    /// The session this request loaded.
    loaded: Option<Loaded>,
    /// The request went on anonymous because its session could not be loaded.
    anonymous: bool,
    /// How the store operation that failed this request failed.
    failure: Option<Failed>,
}

/// A session as a request loaded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loaded {
    /// The session key its cookie carried.
    pub(crate) session_key: String,
    pub(crate) key: RedisKey,
    pub(crate) state: Arc<SessionState>,
    /// Its creation time, in milliseconds since the epoch.
    pub(crate) created: u64,
    /// Whether this request's own `delete` of it found it already gone (a logout or another
    /// renewal ended it first).
    pub(crate) ended_elsewhere: bool,
    /// Whether it was read where actix-session's own store keeps it (see `store/legacy.rs`).
    pub(crate) old_layout: bool,
    /// Its entries stored in the other form than the store writes now (sealed or in clear): a
    /// write of the session writes them again.
    pub(crate) rewrite: Vec<String>,
}

/// How a store operation failed a request: what the request deserves, and why, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failed {
    /// `503` when Redis was unavailable, `413` for state over the limit, `500` otherwise.
    pub(crate) status: StatusCode,
    /// The error and its causes.
    pub(crate) cause: String,
}

/// Runs one request inside a fresh scope; returns its output and, if a store operation failed
/// it, how. `safe_method`: whether the request's method is safe.
pub(crate) async fn run<F: Future>(safe_method: bool, request: F) -> (F::Output, Option<Failed>) {
    let scope = RequestScope {
        safe: safe_method,
        ..RequestScope::default()
    };
    SCOPE
        .scope(RefCell::new(scope), async {
            let output = request.await;
            (
                output,
                SCOPE.with(|scope| scope.borrow_mut().failure.take()),
            )
        })
        .await
}

/// `f` on the current request's scope, or `None` outside [`TrackChanges`](crate::request::middleware::TrackChanges).
/// Only the store's session operations call this, so the first call outside a scope is worth
/// one line in the logs.
fn with<R>(f: impl FnOnce(&mut RequestScope) -> R) -> Option<R> {
    let result = SCOPE.try_with(|scope| f(&mut scope.borrow_mut())).ok();
    if result.is_none() {
        static UNTRACKED: Once = Once::new();
        UNTRACKED.call_once(|| {
            tracing::debug!(
                "a session store operation ran outside TrackChanges: updates replace the whole \
                 state, unavailable Redis answers 500 rather than 503, and the anonymous \
                 fallback is off"
            );
        });
    }
    result
}

/// Notes the session a request loaded, under the session key its cookie carried.
pub(crate) fn remember(
    session_key: &str,
    key: &RedisKey,
    state: &SessionState,
    created: u64,
    rewrite: Vec<String>,
) {
    remember_shared(session_key, key, Arc::new(state.clone()), created, rewrite);
}

/// [`remember`], of a state shared with the near cache (no copy of it made).
pub(crate) fn remember_shared(
    session_key: &str,
    key: &RedisKey,
    state: Arc<SessionState>,
    created: u64,
    rewrite: Vec<String>,
) {
    with(|scope| {
        scope.loaded = Some(Loaded {
            session_key: session_key.to_owned(),
            key: key.clone(),
            state,
            created,
            ended_elsewhere: false,
            old_layout: false,
            rewrite,
        });
    });
}

/// Notes that the session this request loaded was read where actix-session's own store keeps
/// it.
pub(crate) fn note_old_layout() {
    with(|scope| {
        if let Some(loaded) = scope.loaded.as_mut() {
            loaded.old_layout = true;
        }
    });
}

/// Whether this request loaded the session under `session_key` where actix-session's own
/// store keeps it (`Some(true)`) or in this store's layout (`Some(false)`); `None` when it
/// loaded no such session.
pub(crate) fn loaded_in_old_layout(session_key: &str) -> Option<bool> {
    loaded_as(session_key, |loaded| loaded.old_layout)
}

/// Notes that this request deleted `key`, and whether the key was still there: a renewal
/// whose delete finds the session gone must not bring it back under a new id.
pub(crate) fn note_deleted(key: &RedisKey, removed: bool) {
    with(|scope| {
        if let Some(loaded) = scope.loaded.as_mut().filter(|loaded| loaded.key == *key) {
            loaded.ended_elsewhere = !removed;
        }
    });
}

/// Takes the session this request loaded for `key` out of the scope, if it loaded one.
pub(crate) fn take_loaded(key: &RedisKey) -> Option<Loaded> {
    with(|scope| scope.loaded.take())
        .flatten()
        .filter(|loaded| loaded.key == *key)
}

/// Takes the session this request loaded out of the scope, whatever its key: what a `save`
/// after a `load` in one request renews.
pub(crate) fn take_renewed() -> Option<Loaded> {
    with(|scope| scope.loaded.take()).flatten()
}

/// The key of the session this request loaded, if it loaded one.
pub(crate) fn loaded_key() -> Option<RedisKey> {
    with(|scope| scope.loaded.as_ref().map(|loaded| loaded.key.clone())).flatten()
}

/// The value of entry `name` in the session this request loaded at `key`, if any.
pub(crate) fn loaded_entry(key: &RedisKey, name: &str) -> Option<String> {
    with(|scope| {
        scope
            .loaded
            .as_ref()
            .filter(|loaded| loaded.key == *key)
            .and_then(|loaded| loaded.state.get(name).cloned())
    })
    .flatten()
}

/// The Redis key of the session this request loaded under `session_key`, if it loaded one:
/// the store hashes each session key once per request.
pub(crate) fn key_loaded_as(session_key: &str) -> Option<RedisKey> {
    loaded_as(session_key, |loaded| loaded.key.clone())
}

/// Whether this request loaded the session under `session_key` (which slid its expiry).
pub(crate) fn was_loaded(session_key: &str) -> bool {
    loaded_as(session_key, |_| ()).is_some()
}

/// `read` of the session this request loaded under `session_key`, if it loaded one.
fn loaded_as<R>(session_key: &str, read: impl FnOnce(&Loaded) -> R) -> Option<R> {
    with(|scope| {
        scope
            .loaded
            .as_ref()
            .filter(|loaded| loaded.session_key == session_key)
            .map(read)
    })
    .flatten()
}

/// Whether this request may go on anonymous when its session cannot be loaded: it runs inside
/// [`TrackChanges`](crate::request::middleware::TrackChanges) and its method is safe. An unsafe one (a logout, a
/// form post) must fail instead: actix-session would drop what it does to a session it never
/// loaded.
pub(crate) fn may_go_anonymous() -> bool {
    with(|scope| scope.safe).unwrap_or(false)
}

/// Whether this request's method is unsafe (a form post, a logout: it likely changes its
/// session), as far as [`TrackChanges`](crate::request::middleware::TrackChanges) knows;
/// `false` outside it.
pub(crate) fn likely_writes() -> bool {
    with(|scope| !scope.safe).unwrap_or(false)
}

/// Notes that this request goes on anonymous: the failed load is no failure of the request, but
/// the request must not write a session either (it would replace the visitor's cookie).
pub(crate) fn note_anonymous() {
    with(|scope| {
        scope.anonymous = true;
        scope.failure = None;
    });
}

/// Whether this request went on anonymous (see [`note_anonymous`]).
pub(crate) fn went_anonymous() -> bool {
    with(|scope| scope.anonymous).unwrap_or(false)
}

/// Notes how a session operation of this request failed. actix-session stops at the first
/// failed operation, so the last note describes it.
pub(crate) fn note_failure(err: &StoreError) {
    with(|scope| {
        scope.failure = Some(Failed {
            status: err.status_code(),
            cause: Chain(err).to_string(),
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_loaded_state_is_kept_only_inside_a_scope_and_for_its_key() {
        let state = SessionState::from([("a".to_owned(), "1".to_owned())]);
        let key = RedisKey::for_id("p:", "k");
        let other = RedisKey::for_id("p:", "other");
        let loaded = Loaded {
            session_key: "k".to_owned(),
            key: key.clone(),
            state: Arc::new(state.clone()),
            created: 7,
            ended_elsewhere: false,
            old_layout: false,
            rewrite: Vec::new(),
        };
        remember("k", &key, &state, 7, Vec::new());
        assert_eq!(take_loaded(&key), None, "outside a scope nothing is kept");
        let ((), failure) = run(true, async {
            remember("k", &key, &state, 7, Vec::new());
            assert_eq!(take_loaded(&other), None);
            remember("k", &key, &state, 7, Vec::new());
            assert!(was_loaded("k") && !was_loaded("other"));
            assert_eq!(key_loaded_as("k"), Some(key.clone()));
            assert_eq!(key_loaded_as("other"), None);
            assert_eq!(take_loaded(&key), Some(loaded.clone()));
            assert_eq!(take_loaded(&key), None, "taken once");
            remember("k", &key, &state, 7, Vec::new());
            assert_eq!(take_renewed(), Some(loaded.clone()));
            note_failure(&StoreError::IdCollision);
        })
        .await;
        let failure = failure.expect("a failure");
        assert_eq!(failure.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(failure.cause, StoreError::IdCollision.to_string());
    }
}

//! Knowing what a request changed, so that `update` writes only that.
//!
//! actix-session hands `update` the whole state, not what changed, so two overlapping requests
//! of one session that change different entries would each write back the state they loaded,
//! and the later one would erase the other's change. [`TrackChanges`] wraps actix-session's
//! middleware in a per-request scope (a tokio task-local): `load` leaves the state as loaded
//! there, and `update` sends Redis only the entries set or removed since; `update_ttl` after a
//! `load` costs nothing, since the load slid the expiry already. Without the wrapper the store
//! falls back to replacing the whole state atomically, and `update_ttl` to a `PEXPIRE`.
//!
//! The same scope lets the wrapper tell an unreachable Redis from other failures: the store
//! notes it there, and the wrapper answers `503 Service Unavailable` with `Retry-After` where
//! actix-session alone would answer a bare `500` (and `413` for state over the size limit).

use std::{cell::RefCell, future::Future, pin::Pin};

use actix_session::SessionMiddleware;
use actix_web::{
    HttpResponse,
    dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::{
        StatusCode,
        header::{CACHE_CONTROL, HeaderValue, RETRY_AFTER, SET_COOKIE},
    },
};

use crate::{RedisSessionStore, StoreError, state::SessionState};

/// Seconds a client is asked to wait after a `503` for an unreachable Redis.
const RETRY_AFTER_SECONDS: &str = "1";

/// What the store learns about one request while it runs.
#[derive(Default)]
struct RequestScope {
    /// Whether the request's method is safe (`GET`, `HEAD`, ...): only such a request may go
    /// on anonymous when its session cannot be loaded.
    safe: bool,
    /// The session this request loaded: its Redis key and state.
    loaded: Option<(String, SessionState)>,
    /// The request went on anonymous because its session could not be loaded.
    anonymous: bool,
    /// How the store operation that failed this request failed.
    failure: Option<Failure>,
}

/// The failures of a store operation that deserve an answer other than actix-session's `500`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Redis was unavailable: `503` with `Retry-After`.
    Unavailable,
    /// The request made the state larger than the limit: `413`.
    TooLarge,
    /// Anything else: actix-session's `500`.
    Other,
}

tokio::task_local! {
    static SCOPE: RefCell<RequestScope>;
}

/// Notes the state a request loaded, when the request runs inside [`TrackChanges`].
pub(crate) fn remember(key: &str, state: &SessionState) {
    let _ =
        SCOPE.try_with(|scope| scope.borrow_mut().loaded = Some((key.to_owned(), state.clone())));
}

/// Whether this request may go on anonymous when its session cannot be loaded: it runs inside
/// [`TrackChanges`] and its method is safe. An unsafe one (a logout, a form post) must fail
/// instead: actix-session would drop what it does to a session it never loaded.
pub(crate) fn may_go_anonymous() -> bool {
    SCOPE.try_with(|scope| scope.borrow().safe).unwrap_or(false)
}

/// Notes that this request goes on anonymous: the failed load is no failure of the request, but
/// the request must not write a session either (it would replace the visitor's cookie).
pub(crate) fn note_anonymous() {
    let _ = SCOPE.try_with(|scope| {
        let mut scope = scope.borrow_mut();
        scope.anonymous = true;
        scope.failure = None;
    });
}

/// Whether this request went on anonymous (see [`note_anonymous`]).
pub(crate) fn went_anonymous() -> bool {
    SCOPE
        .try_with(|scope| scope.borrow().anonymous)
        .unwrap_or(false)
}

/// Notes how a store operation of this request failed, when it runs inside [`TrackChanges`].
pub(crate) fn note_failure(err: &StoreError) {
    let failure = if err.is_unavailable() {
        Failure::Unavailable
    } else if matches!(err, StoreError::StateTooLarge { .. }) {
        Failure::TooLarge
    } else {
        Failure::Other
    };
    let _ = SCOPE.try_with(|scope| scope.borrow_mut().failure = Some(failure));
}

/// Whether this request loaded the session at `key` (which slid its expiry), when it runs
/// inside [`TrackChanges`].
pub(crate) fn was_loaded(key: &str) -> bool {
    SCOPE
        .try_with(|scope| {
            scope
                .borrow()
                .loaded
                .as_ref()
                .is_some_and(|(loaded_key, _)| loaded_key == key)
        })
        .unwrap_or(false)
}

/// The state this request loaded for `key`, if it runs inside [`TrackChanges`].
pub(crate) fn loaded(key: &str) -> Option<SessionState> {
    SCOPE
        .try_with(|scope| scope.borrow_mut().loaded.take())
        .ok()
        .flatten()
        .and_then(|(loaded_key, state)| (loaded_key == key).then_some(state))
}

/// What a request changed: entries set (new or with a new value) and entries removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes<'a> {
    pub(crate) set: Vec<(&'a str, &'a str)>,
    pub(crate) removed: Vec<&'a str>,
}

impl<'a> Changes<'a> {
    pub(crate) fn between(loaded: &'a SessionState, now: &'a SessionState) -> Self {
        let set = now
            .iter()
            .filter(|(name, value)| loaded.get(*name) != Some(*value))
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let removed = loaded
            .keys()
            .filter(|name| !now.contains_key(*name))
            .map(String::as_str)
            .collect();
        Self { set, removed }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty()
    }
}

/// Wraps actix-session's `SessionMiddleware` so that each request writes only the entries it
/// changed: overlapping requests of one session that change different entries all keep their
/// changes (the same entry changed twice: the last writer wins). When Redis cannot be reached
/// within the store's timeouts, the request gets `503 Service Unavailable` with `Retry-After`
/// instead of actix-session's `500`; state over the store's size limit gets
/// `413 Payload Too Large`. Responses that set or clear a cookie get
/// `Cache-Control: no-store`.
///
/// ```no_run
/// use actix_session::SessionMiddleware;
/// use actix_web::{App, cookie::Key};
/// use session_store::{RedisSessionStore, TrackChanges};
///
/// # fn app(store: RedisSessionStore, key: Key) {
/// let app = App::new().wrap(TrackChanges::new(SessionMiddleware::new(store, key)));
/// # }
/// ```
#[derive(Clone)]
pub struct TrackChanges {
    inner: SessionMiddleware<RedisSessionStore>,
}

impl TrackChanges {
    /// Wraps `middleware`, configured as you like.
    pub fn new(middleware: SessionMiddleware<RedisSessionStore>) -> Self {
        Self { inner: middleware }
    }
}

impl<S, B> Transform<S, ServiceRequest> for TrackChanges
where
    SessionMiddleware<RedisSessionStore>: Transform<
            S,
            ServiceRequest,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        >,
    <SessionMiddleware<RedisSessionStore> as Transform<S, ServiceRequest>>::Future: 'static,
    <<SessionMiddleware<RedisSessionStore> as Transform<S, ServiceRequest>>::Transform as Service<
        ServiceRequest,
    >>::Future: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = TrackChangesService<
        <SessionMiddleware<RedisSessionStore> as Transform<S, ServiceRequest>>::Transform,
    >;
    type InitError = ();
    type Future = Pin<Box<dyn Future<Output = Result<Self::Transform, ()>>>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let inner = self.inner.new_transform(service);
        Box::pin(async move {
            Ok(TrackChangesService {
                inner: inner.await?,
            })
        })
    }
}

/// The service [`TrackChanges`] makes: actix-session's, run inside a per-request scope.
#[doc(hidden)]
pub struct TrackChangesService<T> {
    inner: T,
}

impl<T, B> Service<ServiceRequest> for TrackChangesService<T>
where
    T: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    T::Future: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, actix_web::Error>>>>;

    forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let scope = RequestScope {
            safe: req.method().is_safe(),
            ..RequestScope::default()
        };
        let response = self.inner.call(req);
        Box::pin(SCOPE.scope(RefCell::new(scope), async move {
            match response.await {
                Ok(mut response) => {
                    forbid_caching_of_cookies(&mut response);
                    Ok(response)
                }
                Err(err) => match SCOPE.with(|scope| scope.borrow().failure) {
                    Some(Failure::Unavailable) => {
                        tracing::warn!(error = %err, cause = ?err, "Redis unavailable: answering 503");
                        Err(bodiless(err, StatusCode::SERVICE_UNAVAILABLE))
                    }
                    Some(Failure::TooLarge) => {
                        tracing::info!(error = %err, "session state over the limit: answering 413");
                        Err(bodiless(err, StatusCode::PAYLOAD_TOO_LARGE))
                    }
                    Some(Failure::Other) | None => Err(err),
                },
            }
        }))
    }
}

/// A response that sets or clears a cookie must never be stored by a cache, which could hand
/// the session to someone else: it gets `Cache-Control: no-store`.
fn forbid_caching_of_cookies<B>(response: &mut ServiceResponse<B>) {
    let headers = response.headers_mut();
    if headers.contains_key(SET_COOKIE) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// `err` answered with `status` and no body that could leak internals; a `503` says when to
/// try again.
fn bodiless(err: actix_web::Error, status: StatusCode) -> actix_web::Error {
    let mut response = HttpResponse::new(status);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    }
    actix_web::error::InternalError::from_response(err, response).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(entries: &[(&str, &str)]) -> SessionState {
        entries
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn changes_are_what_was_set_or_removed() {
        let loaded = state(&[("kept", "1"), ("changed", "2"), ("removed", "3")]);
        let now = state(&[("kept", "1"), ("changed", "20"), ("added", "4")]);
        let mut changes = Changes::between(&loaded, &now);
        changes.set.sort_unstable();
        assert_eq!(
            changes,
            Changes {
                set: vec![("added", "4"), ("changed", "20")],
                removed: vec!["removed"],
            }
        );
        assert!(Changes::between(&loaded, &loaded).is_empty());
    }

    #[tokio::test]
    async fn the_loaded_state_is_kept_only_inside_a_scope_and_for_its_key() {
        let loaded = state(&[("a", "1")]);
        remember("k", &loaded);
        assert_eq!(super::loaded("k"), None, "outside a scope nothing is kept");
        SCOPE
            .scope(RefCell::new(RequestScope::default()), async {
                remember("k", &loaded);
                assert_eq!(super::loaded("other"), None);
                remember("k", &loaded);
                assert!(was_loaded("k") && !was_loaded("other"));
                assert_eq!(super::loaded("k"), Some(loaded.clone()));
                assert_eq!(super::loaded("k"), None, "taken once");
            })
            .await;
    }
}

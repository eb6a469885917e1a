//! Knowing what a request changed, so that `update` writes only that.
//!
//! actix-session hands `update` the whole state, not what changed, so two overlapping requests
//! of one session that change different entries would each write back the state they loaded,
//! and the later one would erase the other's change. [`TrackChanges`] wraps actix-session's
//! middleware in a per-request scope (a tokio task-local): `load` leaves the state as loaded
//! there, and `update` sends Redis only the entries set or removed since; `update_ttl` after a
//! `load` costs nothing, since the load slid the expiry already. Without the wrapper the store
//! falls back to replacing the whole state atomically, and `update_ttl` to a `PEXPIRE`.

use std::{cell::RefCell, future::Future, pin::Pin};

use actix_session::SessionMiddleware;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use tokio::task::futures::TaskLocalFuture;

use crate::{RedisSessionStore, state::SessionState};

tokio::task_local! {
    /// The session this request loaded: its Redis key and state.
    static LOADED: RefCell<Option<(String, SessionState)>>;
}

/// Notes the state a request loaded, when the request runs inside [`TrackChanges`].
pub(crate) fn remember(key: &str, state: &SessionState) {
    let _ = LOADED.try_with(|loaded| *loaded.borrow_mut() = Some((key.to_owned(), state.clone())));
}

/// Whether this request loaded the session at `key` (which slid its expiry), when it runs
/// inside [`TrackChanges`].
pub(crate) fn was_loaded(key: &str) -> bool {
    LOADED
        .try_with(|loaded| {
            loaded
                .borrow()
                .as_ref()
                .is_some_and(|(loaded_key, _)| loaded_key == key)
        })
        .unwrap_or(false)
}

/// The state this request loaded for `key`, if it runs inside [`TrackChanges`].
pub(crate) fn loaded(key: &str) -> Option<SessionState> {
    LOADED
        .try_with(|loaded| loaded.borrow_mut().take())
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
/// changes (the same entry changed twice: the last writer wins).
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
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = TaskLocalFuture<RefCell<Option<(String, SessionState)>>, T::Future>;

    forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        LOADED.scope(RefCell::new(None), self.inner.call(req))
    }
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
        LOADED
            .scope(RefCell::new(None), async {
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

//! [`TrackChanges`]: actix-session's middleware run inside a per-request [scope](crate::request::scope),
//! and the answers it gives where actix-session alone would give a bare `500`.

use std::{future::Future, pin::Pin, sync::Arc};

use actix_session::{SessionMiddleware, config::SessionMiddlewareBuilder};
use actix_web::{
    dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::{
        StatusCode,
        header::{CACHE_CONTROL, HeaderValue, SET_COOKIE},
    },
};

use crate::{
    error::{failure_response, log_failure},
    request::keys::{CookieKeys, ReissueService, Ring},
    request::scope::{self, Failed},
    store::RedisSessionStore,
};

/// Wraps actix-session's `SessionMiddleware` so that each request writes only the entries it
/// changed: overlapping requests of one session that change different entries all keep their
/// changes (the same entry changed twice: the last writer wins). When Redis cannot be reached
/// within the store's timeouts, the request gets `503 Service Unavailable` with `Retry-After`
/// instead of actix-session's `500`; state over the store's size limit gets
/// `413 Payload Too Large`. Responses that set or clear a cookie get
/// `Cache-Control: no-store`.
///
/// Built with [`with_keys`](Self::with_keys), it also accepts cookies sealed by previous keys
/// and re-issues them under the current one: the cookie key rotates with nobody logged out.
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
    ring: Ring,
}

impl TrackChanges {
    /// Wraps `middleware`, configured as you like, with its one key.
    pub fn new(middleware: SessionMiddleware<RedisSessionStore>) -> Self {
        Self {
            inner: middleware,
            ring: None,
        }
    }

    /// actix-session's middleware on `store`, sealing cookies with the current key of `keys`
    /// under its cookie name and content security, with the other cookie settings that
    /// `configure` makes (set the name and content security on `keys`, not there); and
    /// cookies sealed by a previous key of `keys` accepted, and re-issued under the current
    /// one on the same response (the same session, no Redis write).
    ///
    /// ```no_run
    /// use actix_web::{App, cookie::Key};
    /// use session_store::{CookieKeys, RedisSessionStore, TrackChanges};
    ///
    /// # fn app(store: RedisSessionStore, new_key: Key, old_key: Key) {
    /// let keys = CookieKeys::new(new_key).previous([old_key]);
    /// let app = App::new().wrap(TrackChanges::with_keys(store, keys, |cookie| {
    ///     cookie.cookie_secure(true)
    /// }));
    /// # }
    /// ```
    pub fn with_keys(
        store: RedisSessionStore,
        keys: CookieKeys,
        configure: impl FnOnce(
            SessionMiddlewareBuilder<RedisSessionStore>,
        ) -> SessionMiddlewareBuilder<RedisSessionStore>,
    ) -> Self {
        let builder = SessionMiddleware::builder(store, keys.current().clone())
            .cookie_name(keys.name().to_owned())
            .cookie_content_security(keys.security());
        Self {
            inner: configure(builder).build(),
            ring: Some(Arc::new(keys)),
        }
    }
}

/// The service actix-session's middleware makes of `S`, itself wrapped around the application
/// (the inner layer that re-issues a cookie a previous key sealed).
type SessionService<S> = <SessionMiddleware<RedisSessionStore> as Transform<
    ReissueService<S>,
    ServiceRequest,
>>::Transform;

impl<S, B> Transform<S, ServiceRequest> for TrackChanges
where
    SessionMiddleware<RedisSessionStore>: Transform<
            ReissueService<S>,
            ServiceRequest,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        >,
    <SessionMiddleware<RedisSessionStore> as Transform<ReissueService<S>, ServiceRequest>>::Future:
        'static,
    <SessionService<S> as Service<ServiceRequest>>::Future: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = TrackChangesService<SessionService<S>>;
    type InitError = ();
    type Future = Pin<Box<dyn Future<Output = Result<Self::Transform, ()>>>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let inner = self.inner.new_transform(ReissueService { service });
        let ring = self.ring.clone().filter(|keys| keys.rotating());
        Box::pin(async move {
            Ok(TrackChangesService {
                inner: inner.await?,
                ring,
            })
        })
    }
}

/// The service [`TrackChanges`] makes: actix-session's, run inside a per-request scope.
#[doc(hidden)]
pub struct TrackChangesService<T> {
    inner: T,
    /// The key ring, when it has previous keys.
    ring: Option<Arc<CookieKeys>>,
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

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        if let Some(keys) = &self.ring {
            keys.reseal(&mut req);
        }
        let safe = req.method().is_safe();
        let response = self.inner.call(req);
        Box::pin(async move {
            match scope::run(safe, response).await {
                (Ok(mut response), _) => {
                    forbid_caching_of_cookies(&mut response);
                    Ok(response)
                }
                (Err(err), failure) => Err(answer(err, failure)),
            }
        })
    }
}

/// The answer to a request that a store operation failed: `503` or `413` with no body that
/// could leak internals, where actix-session alone would answer `500`.
fn answer(err: actix_web::Error, failure: Option<Failed>) -> actix_web::Error {
    let Some(Failed { status, cause }) = failure else {
        return err;
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        log_failure(status, &cause);
        return err;
    }
    actix_web::error::InternalError::from_response(err, failure_response(status, &cause)).into()
}

/// A response that sets or clears a cookie must never be stored by a cache, which could hand
/// the session to someone else: it gets `Cache-Control: no-store`.
fn forbid_caching_of_cookies<B>(response: &mut ServiceResponse<B>) {
    let headers = response.headers_mut();
    if headers.contains_key(SET_COOKIE) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

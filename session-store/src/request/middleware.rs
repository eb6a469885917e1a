//! [`TrackChanges`]: actix-session's middleware run inside a per-request [scope](crate::request::scope),
//! and the answers it gives where actix-session alone would give a bare `500`.

use std::{future::Future, pin::Pin};

use actix_session::SessionMiddleware;
use actix_web::{
    dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::{
        StatusCode,
        header::{CACHE_CONTROL, HeaderValue, SET_COOKIE},
    },
};

use crate::{
    error::{failure_response, log_failure},
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

/// The service actix-session's middleware makes of `S`.
type SessionService<S> =
    <SessionMiddleware<RedisSessionStore> as Transform<S, ServiceRequest>>::Transform;

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
    <SessionService<S> as Service<ServiceRequest>>::Future: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = TrackChangesService<SessionService<S>>;
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

//! What a request passes before and after the store: the middleware, the cookie's key ring
//! and the request's scope.

pub(crate) mod keys;
pub(crate) mod middleware;
pub(crate) mod scope;

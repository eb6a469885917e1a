//! What a request passes before and after the store: the middleware and the request's scope.

pub(crate) mod middleware;
pub(crate) mod scope;

//! A store call a handler makes itself (listing or revoking sessions, counting failed logins)
//! that fails, answered as the session middleware answers its own: `503` with `Retry-After`
//! when Redis is unavailable, `500` when retrying cannot help (a misconfiguration).

use actix_web::{HttpResponse, error::InternalError, http::header};
use session_store::StoreError;

/// The error response for `err`.
pub(crate) fn store_failure(err: StoreError) -> actix_web::Error {
    if err.is_unavailable() {
        tracing::warn!(error = %err, "Redis unavailable: answered 503");
        let response = HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .finish();
        InternalError::from_response(err, response).into()
    } else {
        tracing::error!(error = %err, cause = ?err, "the session store failed");
        actix_web::error::ErrorInternalServerError(err)
    }
}

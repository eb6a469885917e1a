//! The answers handlers share: a rendered page, a redirect, a JSON error, a file of the
//! instance's own, and the answers to an anonymous visitor where a signed-in one is needed.

use actix_web::{
    HttpResponse,
    error::{ErrorInternalServerError, InternalError},
    http::{StatusCode, header},
};
use askama::Template;

/// `template` rendered as an HTML page with `status`.
pub(crate) fn render(
    template: &impl Template,
    status: StatusCode,
) -> actix_web::Result<HttpResponse> {
    let body = template.render().map_err(ErrorInternalServerError)?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body))
}

/// `303 See Other` to `location`.
pub(crate) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// `{"error": message}` with `status`.
pub(crate) fn error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message }))
}

/// Marks `response` as one no cache may keep (it is someone's, or holds a token).
pub(crate) fn no_store(response: &mut HttpResponse) {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
}

/// The content type of scripts.
pub(crate) const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// A script or stylesheet built into the instance, which browsers may keep for an hour.
pub(crate) fn static_file(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}

/// The API's answer to an anonymous session: `401 {"error": "not signed in"}`.
pub(crate) fn not_signed_in() -> HttpResponse {
    error(StatusCode::UNAUTHORIZED, "not signed in")
}

/// The error that answers with `response`, for a handler to return with `?`.
pub(crate) fn answered(response: HttpResponse) -> actix_web::Error {
    InternalError::from_response("answered early", response).into()
}

//! What every response tells the browser, and what the instance refuses from one: requests
//! that change something (`POST`, `PUT`, `DELETE`, `PATCH`) sent from another origin, and
//! bodies larger than a login or a profile could need.
//!
//! Cookies are `SameSite=Lax`, which stops other *sites* from posting with them, but every
//! port on localhost (and every sibling subdomain in production) is the same site: a plain
//! HTML form there could log a user out or revoke their devices. Browsers say where a request
//! comes from (`Sec-Fetch-Site`, or else `Origin`); a request with neither header is not a
//! browser's cross-origin request (curl, scripts), so it goes on, and the login form keeps its
//! own token besides.

use actix_web::{
    Error, HttpResponse,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        Method,
        header::{self, HeaderMap},
    },
    middleware::{DefaultHeaders, Next},
    web,
};

/// The largest JSON or form body any route takes: a login, a profile, a form token, with room
/// to spare. Larger ones get `413` before any password check or Redis command.
pub const BODY_LIMIT: usize = 4 * 1024;

/// Pages load scripts and styles from this origin only, no inline script, and no one frames
/// them.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self' http://localhost:* \
    http://127.0.0.1:*; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// The body limits, as app data for every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::JsonConfig::default().limit(BODY_LIMIT))
        .app_data(web::FormConfig::default().limit(BODY_LIMIT));
}

/// The headers every response carries.
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "same-origin"))
}

/// Middleware (through [`actix_web::middleware::from_fn`]) that answers `403` to a request
/// that changes something and that the browser says comes from another origin, before it
/// reaches the session or a handler.
///
/// # Errors
/// The inner service's, passed on unchanged.
pub async fn refuse_cross_origin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if changes_something(req.method())
        && from_another_origin(req.headers(), req.connection_info().scheme())
    {
        tracing::info!(method = %req.method(), path = req.path(), "cross-origin request refused");
        let response = HttpResponse::Forbidden().json(serde_json::json!({
            "error": "cross-origin request refused: send it from this site's own pages",
        }));
        return Ok(req.into_response(response));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

fn changes_something(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the browser says a request with `headers`, sent over `scheme`, comes from an origin
/// other than the one it is sent to: `Sec-Fetch-Site` when it is there (`same-origin`, or
/// `none` for what the user typed, pass), else `Origin` against the request's own (`Host`,
/// scheme); neither header passes.
pub(crate) fn from_another_origin(headers: &HeaderMap, scheme: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let own = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(|host| format!("{scheme}://{host}"));
    own.is_none_or(|own| origin.as_bytes() != own.as_bytes())
}

#[cfg(test)]
mod tests {
    use actix_web::{App, test};

    use super::*;

    async fn status(method: Method, headers: &[(&str, &str)]) -> u16 {
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(refuse_cross_origin))
                .default_service(web::to(HttpResponse::Ok)),
        )
        .await;
        let mut req = test::TestRequest::default()
            .method(method)
            .uri("/api/logout")
            .insert_header((header::HOST, "127.0.0.1:8080"));
        for header in headers {
            req = req.insert_header(*header);
        }
        test::call_service(&app, req.to_request())
            .await
            .status()
            .as_u16()
    }

    /// The status of a request by `method` with each set of `headers`.
    async fn statuses(method: Method, headers: &[&[(&str, &str)]]) -> Vec<u16> {
        let mut statuses = Vec::new();
        for headers in headers {
            statuses.push(status(method.clone(), headers).await);
        }
        statuses
    }

    #[actix_web::test]
    async fn a_change_from_another_origin_is_refused() {
        let foreign: [&[(&str, &str)]; 5] = [
            &[("sec-fetch-site", "same-site")],
            &[("sec-fetch-site", "cross-site")],
            &[("origin", "http://127.0.0.1:9999")],
            &[("origin", "null")],
            &[("origin", "https://127.0.0.1:8080")],
        ];
        assert_eq!(statuses(Method::POST, &foreign).await, [403; 5]);
        assert_eq!(statuses(Method::DELETE, &foreign).await, [403; 5]);
    }

    #[actix_web::test]
    async fn the_same_origin_reads_and_clients_without_a_browser_pass() {
        let own: [&[(&str, &str)]; 4] = [
            &[("sec-fetch-site", "same-origin")],
            &[("sec-fetch-site", "none")],
            &[("origin", "http://127.0.0.1:8080")],
            &[],
        ];
        assert_eq!(statuses(Method::POST, &own).await, [200; 4]);
        let foreign = [("origin", "http://127.0.0.1:9999")];
        assert_eq!(status(Method::GET, &foreign).await, 200);
    }
}

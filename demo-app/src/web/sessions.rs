//! "Your sessions": every device where the signed-in user is logged in, read from the store's
//! index of their sessions, with a way to log out one of them or all the others; as a page
//! (`/sessions`) and as JSON (`/api/sessions`, and `/api/logout-everywhere`).
//!
//! A revoked session ends in Redis, so its very next request, on any instance, is anonymous.

use std::time::{Duration, SystemTime};

use actix_session::Session;
use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use askama::Template;
use serde::{Deserialize, Serialize};
use session_store::{CurrentSession, UserSession};

use super::{
    csrf,
    device_name::device_name,
    pages::PageContext,
    respond::{error, no_store, render, see_other},
    state::AppState,
    user,
};

/// Registers the page, its forms and the API.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/sessions", web::get().to(page))
        .route("/sessions/revoke", web::post().to(revoke_form))
        .route(
            "/sessions/revoke-others",
            web::post().to(revoke_others_form),
        )
        .route("/api/sessions", web::get().to(list))
        .route("/api/sessions/revoke-others", web::post().to(revoke_others))
        .route("/api/sessions/{reference}", web::delete().to(revoke))
        .route("/api/logout-everywhere", web::post().to(logout_everywhere));
}

/// One of the user's sessions, as `GET /api/sessions` gives it.
#[derive(Debug, Serialize)]
struct Device {
    /// What `DELETE /api/sessions/{reference}` takes; never the session id.
    reference: String,
    /// Whether it is the session of the request.
    current: bool,
    /// RFC 3339, UTC, to the second.
    created: String,
    last_seen: String,
    expires: String,
    /// The `User-Agent` of the login.
    user_agent: Option<String>,
    /// The port of the instance that served the login.
    instance: Option<u16>,
}

impl Device {
    fn of(session: &UserSession) -> Self {
        Self {
            reference: session.reference.clone(),
            current: session.current,
            created: rfc3339(session.created),
            last_seen: rfc3339(session.last_seen),
            expires: rfc3339(session.expires),
            user_agent: session.entry(user::USER_AGENT),
            instance: session.entry(user::INSTANCE),
        }
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The signed-in user's sessions, oldest first.
async fn devices(
    state: &AppState,
    user: &str,
    current: &CurrentSession,
) -> actix_web::Result<Vec<UserSession>> {
    state
        .store
        .sessions_of(&user, current)
        .await
        .map_err(actix_web::Error::from)
}

fn revoked(count: usize) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "revoked": count }))
}

/// `GET /api/sessions`.
async fn list(
    state: web::Data<AppState>,
    session: Session,
    current: CurrentSession,
) -> actix_web::Result<HttpResponse> {
    let user = user::signed_in(&session)?;
    let listed: Vec<Device> = devices(&state, &user, &current)
        .await?
        .iter()
        .map(Device::of)
        .collect();
    Ok(HttpResponse::Ok().json(listed))
}

/// `DELETE /api/sessions/{reference}`: `204`, or `404` when the reference names none of the
/// caller's sessions (another user's included).
async fn revoke(
    state: web::Data<AppState>,
    session: Session,
    reference: web::Path<String>,
) -> actix_web::Result<HttpResponse> {
    let user = user::signed_in(&session)?;
    let found = state.store.revoke(&user, &reference).await?;
    if found {
        tracing::info!(user = %user, session = %reference, "session revoked");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Ok(error(StatusCode::NOT_FOUND, "no such session"))
    }
}

/// `POST /api/sessions/revoke-others`: log out everywhere else.
async fn revoke_others(
    state: web::Data<AppState>,
    session: Session,
    current: CurrentSession,
) -> actix_web::Result<HttpResponse> {
    let user = user::signed_in(&session)?;
    let count = revoke_all(&state, &user, Some(&current)).await?;
    Ok(revoked(count))
}

/// `POST /api/logout-everywhere`: every session of the user ends, this one included, whose
/// cookie is cleared as by a logout.
async fn logout_everywhere(
    state: web::Data<AppState>,
    session: Session,
) -> actix_web::Result<HttpResponse> {
    let user = user::signed_in(&session)?;
    let count = revoke_all(&state, &user, None).await?;
    Ok(user::sign_out(&session, HttpResponse::Ok()).json(serde_json::json!({ "revoked": count })))
}

async fn revoke_all(
    state: &AppState,
    user: &str,
    except: Option<&CurrentSession>,
) -> actix_web::Result<usize> {
    let count = state.store.revoke_all(&user, except).await?;
    let scope = if except.is_some() {
        "everywhere else"
    } else {
        "everywhere"
    };
    tracing::info!(user = %user, count, "sessions revoked {scope}");
    Ok(count)
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage {
    page: PageContext,
    rows: Vec<Row>,
    /// What the last form did.
    notice: Option<String>,
}

/// A session as the page shows it.
struct Row {
    device: Device,
    /// "Chrome on Linux", from the user agent.
    name: String,
    created_ago: String,
    last_seen_ago: String,
    expires_in: String,
}

impl Row {
    fn of(session: &UserSession, now: SystemTime) -> Self {
        let device = Device::of(session);
        Self {
            name: device_name(device.user_agent.as_deref()),
            created_ago: ago(now, session.created),
            last_seen_ago: ago(now, session.last_seen),
            expires_in: format!("in {}", span(duration_between(now, session.expires))),
            device,
        }
    }
}

#[derive(Deserialize)]
struct PageQuery {
    /// How many sessions the last form ended.
    revoked: Option<usize>,
}

/// `GET /sessions`.
async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    current: CurrentSession,
    query: web::Query<PageQuery>,
) -> actix_web::Result<HttpResponse> {
    let user = user::signed_in_or_login(&session)?;
    let now = SystemTime::now();
    let rows = devices(&state, &user, &current)
        .await?
        .iter()
        .map(|session| Row::of(session, now))
        .collect();
    let notice = query.revoked.map(|count| match count {
        0 => "That session had ended already.".to_owned(),
        1 => "Logged out 1 other session.".to_owned(),
        n => format!("Logged out {n} other sessions."),
    });
    let page = PageContext::new(&req, &state, &session)?;
    let mut response = render(&SessionsPage { page, rows, notice }, StatusCode::OK)?;
    // It lists the user's devices: no cache may keep it.
    no_store(&mut response);
    Ok(response)
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    reference: String,
    #[serde(default)]
    csrf: String,
}

/// The page's "Log out" button of one session.
async fn revoke_form(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<RevokeForm>,
) -> actix_web::Result<HttpResponse> {
    csrf::check(&session, &form.csrf)?;
    let user = user::signed_in_or_login(&session)?;
    let found = state.store.revoke(&user, &form.reference).await?;
    if found {
        tracing::info!(user = %user, session = %form.reference, "session revoked");
    }
    Ok(see_other(&format!(
        "/sessions?revoked={}",
        usize::from(found)
    )))
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The page's "Log out everywhere else" button.
async fn revoke_others_form(
    state: web::Data<AppState>,
    session: Session,
    current: CurrentSession,
    form: web::Form<CsrfForm>,
) -> actix_web::Result<HttpResponse> {
    csrf::check(&session, &form.csrf)?;
    let user = user::signed_in_or_login(&session)?;
    let count = revoke_all(&state, &user, Some(&current)).await?;
    Ok(see_other(&format!("/sessions?revoked={count}")))
}

fn duration_between(earlier: SystemTime, later: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

/// "just now", "5 min ago".
fn ago(now: SystemTime, then: SystemTime) -> String {
    let elapsed = duration_between(then, now);
    if elapsed < Duration::from_secs(10) {
        "just now".to_owned()
    } else {
        format!("{} ago", span(elapsed))
    }
}

/// "42 s", "5 min", "3 h", "2 days", rounded down.
fn span(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3_600 => format!("{} min", seconds / 60),
        3_600..86_400 => format!("{} h", seconds / 3_600),
        _ => format!("{} days", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_said_roughly() {
        let now = SystemTime::now();
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(now, now - Duration::from_secs(75)), "1 min ago");
        assert_eq!(ago(now, now + Duration::from_secs(5)), "just now");
        assert_eq!(span(Duration::from_secs(42)), "42 s");
        assert_eq!(span(Duration::from_secs(3 * 3_600 + 5)), "3 h");
        assert_eq!(span(Duration::from_secs(2 * 86_400)), "2 days");
    }
}

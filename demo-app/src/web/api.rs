//! The JSON API for scripts and tests.

use actix_session::Session;
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use serde::{Deserialize, Serialize};

use session_store::CurrentSession;

use super::{
    client_address::client_address,
    hashing,
    login_throttle::{self, Attempt},
    redis_info::RedisInfo,
    state::AppState,
    user,
};

/// Registers the API routes.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/login", web::post().to(login))
        .route("/api/logout", web::post().to(logout))
        .route("/api/me", web::get().to(me))
        .route("/api/profile", web::put().to(update_profile));
}

/// Who a session belongs to, and which instance answered.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Me {
    /// The signed-in user, or `null`.
    pub user: Option<String>,
    /// The user's display name, if they chose one.
    pub display_name: Option<String>,
    /// The port of the instance that answered.
    pub instance: u16,
    /// Where the session lives (`GET /api/me` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisInfo>,
}

fn me_of(session: &Session, state: &AppState) -> actix_web::Result<Me> {
    Ok(Me {
        user: user::current(session)?,
        display_name: user::display_name(session)?,
        instance: state.port,
        redis: None,
    })
}

fn error(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message }))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    credentials: web::Json<Credentials>,
) -> actix_web::Result<HttpResponse> {
    let Credentials { username, password } = credentials.into_inner();
    let client = client_address(&req, &state);
    match login_throttle::attempt(&state, &username, &password, client).await? {
        Attempt::Verified => {}
        Attempt::Failed => {
            tracing::info!(%client, "failed login");
            return Ok(error(
                actix_web::http::StatusCode::UNAUTHORIZED,
                "unknown username or wrong password",
            ));
        }
        Attempt::Throttled {
            retry_after,
            message,
        } => {
            tracing::info!(%client, retry_after, "login refused by the throttle");
            return Ok(throttled(retry_after, &message));
        }
        Attempt::Busy => return Ok(too_busy()),
        Attempt::TooLong => {
            return Ok(error(
                actix_web::http::StatusCode::BAD_REQUEST,
                login_throttle::TOO_LONG,
            ));
        }
    }
    user::sign_in(&session, &username, &req, state.port)?;
    tracing::info!(user = %username, %client, "signed in");
    Ok(HttpResponse::Ok().json(me_of(&session, &state)?))
}

/// A login refused by the throttle, with `Retry-After`.
fn throttled(retry_after: u64, message: &str) -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header((header::RETRY_AFTER, retry_after.to_string()))
        .json(serde_json::json!({
            "error": message,
            "retry_after": retry_after,
        }))
}

/// A login turned away because the password checks are saturated: it may retry shortly.
fn too_busy() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header((header::RETRY_AFTER, hashing::RETRY_AFTER_SECS))
        .json(serde_json::json!({ "error": hashing::Busy.to_string() }))
}

async fn logout(state: web::Data<AppState>, session: Session) -> HttpResponse {
    user::sign_out(&session);
    HttpResponse::Ok()
        .insert_header(user::CLEAR_COOKIES)
        .json(Me {
            user: None,
            display_name: None,
            instance: state.port,
            redis: None,
        })
}

async fn me(
    state: web::Data<AppState>,
    session: Session,
    current: CurrentSession,
) -> actix_web::Result<HttpResponse> {
    let me = Me {
        redis: Some(RedisInfo::of(&state.store, &current).await),
        ..me_of(&session, &state)?
    };
    Ok(HttpResponse::Ok().json(me))
}

#[derive(Deserialize)]
struct ProfileUpdate {
    display_name: String,
}

async fn update_profile(
    state: web::Data<AppState>,
    session: Session,
    update: web::Json<ProfileUpdate>,
) -> actix_web::Result<HttpResponse> {
    if user::current(&session)?.is_none() {
        return Ok(error(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "not signed in",
        ));
    }
    if let Err(message) = user::set_display_name(&session, &update.display_name)? {
        return Ok(error(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            &message,
        ));
    }
    Ok(HttpResponse::Ok().json(me_of(&session, &state)?))
}

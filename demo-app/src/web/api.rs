//! The JSON API for scripts and tests.

use actix_session::Session;
use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header},
    web,
};
use serde::{Deserialize, Serialize};

use session_store::CurrentSession;

use super::{
    client_address::client_address,
    hashing,
    login_throttle::{self, Attempt},
    redis_info::RedisInfo,
    respond::error,
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

/// What the store field of the API's answers says on a new instance.
pub(crate) const STORE: &str = "session-store";

/// Who a session belongs to, and which instance answered.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Me {
    /// The signed-in user, or `null`.
    pub user: Option<String>,
    /// The user's display name, if they chose one.
    pub display_name: Option<String>,
    /// The port of the instance that answered.
    pub instance: u16,
    /// The session store of the instance that answered: `session-store`, or actix-session's
    /// own on an old instance (`--legacy-instances`).
    #[serde(default)]
    pub store: String,
    /// Where the session lives (`GET /api/me` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisInfo>,
}

fn me_of(session: &Session, state: &AppState) -> actix_web::Result<Me> {
    Ok(Me {
        user: user::current(session)?,
        display_name: user::display_name(session)?,
        instance: state.port,
        store: STORE.to_owned(),
        redis: None,
    })
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
    let attempt = login_throttle::log_in(&req, &state, &username, &password).await?;
    let Some((status, retry_after)) = attempt.refusal() else {
        user::sign_in(&session, &username, &req, state.port)?;
        tracing::info!(user = %username, client = %client_address(&req, &state), "signed in");
        return Ok(HttpResponse::Ok().json(me_of(&session, &state)?));
    };
    let mut body = serde_json::json!({ "error": refusal_message(&attempt) });
    let mut response = HttpResponse::build(status);
    if let Some(retry_after) = retry_after {
        response.insert_header((header::RETRY_AFTER, retry_after));
    }
    if let Attempt::Throttled { retry_after, .. } = attempt {
        body["retry_after"] = retry_after.into();
    }
    Ok(response.json(body))
}

/// What the API says of a login that did not verify.
fn refusal_message(attempt: &Attempt) -> String {
    match attempt {
        Attempt::Throttled { message, .. } => message.clone(),
        Attempt::Busy => hashing::Busy.to_string(),
        Attempt::TooLong => login_throttle::TOO_LONG.to_owned(),
        Attempt::Failed | Attempt::Verified => "unknown username or wrong password".to_owned(),
    }
}

async fn logout(state: web::Data<AppState>, session: Session) -> HttpResponse {
    user::sign_out(&session, HttpResponse::Ok()).json(Me {
        user: None,
        display_name: None,
        instance: state.port,
        store: STORE.to_owned(),
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
    user::signed_in(&session)?;
    if let Err(message) = user::set_display_name(&session, &update.display_name)? {
        return Ok(error(StatusCode::UNPROCESSABLE_ENTITY, &message));
    }
    Ok(HttpResponse::Ok().json(me_of(&session, &state)?))
}

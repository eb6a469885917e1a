//! The server-rendered pages: home, login, profile, logout.

use actix_session::Session;
use actix_web::{
    HttpRequest, HttpResponse,
    dev::ConnectionInfo,
    error::ErrorInternalServerError,
    http::{StatusCode, header},
    web,
};
use askama::Template;
use serde::Deserialize;

use session_store::CurrentSession;

use super::{
    client_address::client_address,
    csrf,
    login_throttle::{self, Attempt},
    redis_info::RedisInfo,
    respond::{JAVASCRIPT, no_store, render, see_other, static_file},
    state::AppState,
    user,
};

/// What the layout shows on every page.
pub(crate) struct PageContext {
    pub(crate) instance: u16,
    pub(crate) peers: Vec<PeerLink>,
    pub(crate) user: Option<String>,
    pub(crate) csrf: String,
    /// Where the session lives, on the pages that show it.
    pub(crate) redis: Option<RedisInfo>,
}

/// A link to the same page on another instance.
pub(crate) struct PeerLink {
    pub(crate) port: u16,
    pub(crate) url: String,
    pub(crate) current: bool,
}

impl PageContext {
    pub(crate) fn new(
        req: &HttpRequest,
        state: &AppState,
        session: &Session,
    ) -> actix_web::Result<Self> {
        let info = req.connection_info();
        // Same host name as this request, so the browser sends the same cookie to every port.
        let host = host_name(&info);
        let peers = state
            .peers
            .iter()
            .map(|&port| PeerLink {
                port,
                url: format!("{}://{host}:{port}{}", info.scheme(), req.path()),
                current: port == state.port,
            })
            .collect();
        let user = user::current(session)?;
        // Signed-in pages carry the logout form. Anonymous pages have none (the login form's
        // token is the visitor's, not the session's), so merely visiting creates no session.
        let csrf = match user {
            Some(_) => csrf::token(session)?,
            None => String::new(),
        };
        Ok(Self {
            instance: state.port,
            peers,
            user,
            csrf,
            redis: None,
        })
    }

    /// [`PageContext::new`] with where the session lives, for the pages that show it.
    pub(crate) async fn with_redis(
        req: &HttpRequest,
        state: &AppState,
        session: &Session,
        current: &CurrentSession,
    ) -> actix_web::Result<Self> {
        let mut page = Self::new(req, state, session)?;
        page.redis = Some(RedisInfo::of(&state.store, current).await);
        Ok(page)
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    page: PageContext,
    display_name: Option<String>,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    page: PageContext,
    /// The login form's own token, the visitor's: `page.csrf` is the session's, for the
    /// logout form of a signed-in user who posted the login form again.
    csrf: String,
    username: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    page: PageContext,
    display_name: String,
    error: Option<String>,
}

/// The host name a request was sent to, without its port.
pub(crate) fn host_name(info: &ConnectionInfo) -> &str {
    info.host()
        .rsplit_once(':')
        .map_or(info.host(), |(host, _)| host)
}

/// Registers the pages.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/login", web::get().to(login_form))
        .route("/login", web::post().to(login))
        .route("/profile", web::get().to(profile))
        .route("/profile", web::post().to(save_profile))
        .route("/logout", web::post().to(logout))
        .route("/static/style.css", web::get().to(stylesheet))
        .route("/static/history.js", web::get().to(history_script))
        .route("/static/activity.js", web::get().to(activity_script));
}

async fn home(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    current: CurrentSession,
) -> actix_web::Result<HttpResponse> {
    let page = PageContext::with_redis(&req, &state, &session, &current).await?;
    let display_name = user::display_name(&session)?;
    render(&HomePage { page, display_name }, StatusCode::OK)
}

async fn login_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
) -> actix_web::Result<HttpResponse> {
    if user::current(&session)?.is_some() {
        return Ok(see_other("/"));
    }
    login_page(&req, &state, &session, String::new(), None, StatusCode::OK)
}

/// The login form, with the visitor's token (and the cookie that carries it, when they need
/// a new one). Nothing of it is stored in the session or anywhere else on the server.
fn login_page(
    req: &HttpRequest,
    state: &AppState,
    session: &Session,
    username: String,
    error: Option<&str>,
    status: StatusCode,
) -> actix_web::Result<HttpResponse> {
    let page = PageContext::new(req, state, session)?;
    let (csrf, cookie) = state.visitor_tokens.issue(req);
    let error = error.map(str::to_owned);
    let mut response = render(
        &LoginPage {
            page,
            csrf,
            username,
            error,
        },
        status,
    )?;
    // The page holds a token that goes with this visitor's cookie: no cache may hand it on.
    no_store(&mut response);
    if let Some(cookie) = cookie {
        response
            .add_cookie(&cookie)
            .map_err(ErrorInternalServerError)?;
    }
    Ok(response)
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    /// Missing is refused like wrong (403), not as a malformed form (400).
    #[serde(default)]
    csrf: String,
}

async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<LoginForm>,
) -> actix_web::Result<HttpResponse> {
    state.visitor_tokens.check(&req, &form.csrf)?;
    let form = form.into_inner();
    let attempt = login_throttle::log_in(&req, &state, &form.username, &form.password).await?;
    let Some((status, retry_after)) = attempt.refusal() else {
        return signed_in(&req, &state, &session, &form.username);
    };
    let error = refusal_message(&attempt);
    let mut response = login_page(&req, &state, &session, form.username, Some(&error), status)?;
    if let Some(retry_after) = retry_after {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_str(&retry_after).map_err(ErrorInternalServerError)?,
        );
    }
    Ok(response)
}

/// What the login form says of a login that did not verify.
fn refusal_message(attempt: &Attempt) -> String {
    match attempt {
        Attempt::Throttled { message, .. } => message.clone(),
        Attempt::Busy => {
            "Too many people are logging in right now: try again in a moment.".to_owned()
        }
        Attempt::TooLong => format!("Sorry: {}.", login_throttle::TOO_LONG),
        Attempt::Failed | Attempt::Verified => "Unknown username or wrong password.".to_owned(),
    }
}

/// Signs `username` in (the session's first write) and drops the visitor's token, whose job
/// the session's token takes over.
fn signed_in(
    req: &HttpRequest,
    state: &AppState,
    session: &Session,
    username: &str,
) -> actix_web::Result<HttpResponse> {
    user::sign_in(session, username, req, state.port)?;
    tracing::info!(user = %username, client = %client_address(req, state), "signed in");
    let mut response = see_other("/");
    response
        .add_cookie(&state.visitor_tokens.removal())
        .map_err(ErrorInternalServerError)?;
    Ok(response)
}

async fn profile(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    current: CurrentSession,
) -> actix_web::Result<HttpResponse> {
    user::signed_in_or_login(&session)?;
    let page = PageContext::with_redis(&req, &state, &session, &current).await?;
    let display_name = user::display_name(&session)?.unwrap_or_default();
    render(
        &ProfilePage {
            page,
            display_name,
            error: None,
        },
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
struct ProfileForm {
    display_name: String,
    #[serde(default)]
    csrf: String,
}

async fn save_profile(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<ProfileForm>,
) -> actix_web::Result<HttpResponse> {
    csrf::check(&session, &form.csrf)?;
    user::signed_in_or_login(&session)?;
    match user::set_display_name(&session, &form.display_name)? {
        Ok(()) => Ok(see_other("/profile")),
        Err(error) => {
            let page = PageContext::new(&req, &state, &session)?;
            render(
                &ProfilePage {
                    page,
                    display_name: form.into_inner().display_name,
                    error: Some(error),
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(session: Session, form: web::Form<LogoutForm>) -> actix_web::Result<HttpResponse> {
    csrf::check(&session, &form.csrf)?;
    Ok(user::sign_out(&session, HttpResponse::SeeOther())
        .insert_header((header::LOCATION, "/"))
        .finish())
}

async fn stylesheet() -> HttpResponse {
    static_file(
        "text/css; charset=utf-8",
        include_str!("../../static/style.css"),
    )
}

/// The home page's script that shows the activity stream (see the file).
async fn activity_script() -> HttpResponse {
    static_file(JAVASCRIPT, include_str!("../../static/activity.js"))
}

/// The script that lists the instances behind the last page views (see the file).
async fn history_script() -> HttpResponse {
    static_file(JAVASCRIPT, include_str!("../../static/history.js"))
}

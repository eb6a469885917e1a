//! An old instance (`serve --legacy-store`): the demo's accounts and JSON API on actix-session's
//! own `RedisSessionStore` (its redis-rs connection manager), with the same cookie as the new
//! instances, for playing a switch from that store. It serves what a rollout needs (the home
//! page, log in, who am I, the profile's display name, log out); the features of the new
//! store (a user's sessions, the activity stream, the login throttle) are not here.

use actix_session::{
    Session, SessionMiddleware, config::CookieContentSecurity, storage::RedisSessionStore,
};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, cookie::Key, http::StatusCode, web};
use anyhow::Context as _;
use askama::Template;
use serde::Deserialize;

use super::{
    accounts::Accounts,
    api::Me,
    hashing::{self, HashingPool},
    instance::session_cookie_name,
    respond::{error, render},
    user,
};
use crate::{cli::ServeArgs, cookie_key::parse_cookie_key};

/// What the store field of the API's answers says on an old instance.
pub(crate) const STORE: &str = "actix-session RedisSessionStore";

/// What an old instance's handlers share.
struct OldInstance {
    port: u16,
    accounts: Accounts,
    hashing: HashingPool,
}

/// Runs an old instance until it is stopped.
///
/// # Errors
/// When the settings are unusable (an old instance needs one Redis server and the cookie key),
/// Redis cannot be reached or the port cannot be bound.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let url = args.common.redis_url.clone().context(
        "an old instance runs actix-session's own store, which talks to one Redis server: \
         give --redis-url",
    )?;
    let key = parse_cookie_key(
        args.common
            .cookie_key
            .as_deref()
            .context("an old instance needs the demo's --cookie-key")?,
    )?;
    let store = RedisSessionStore::new(url)
        .await
        .context("actix-session's store cannot reach Redis")?;
    let accounts = match &args.common.accounts {
        Some(path) => Accounts::demo_and_file(path)?,
        None => Accounts::demo(),
    };
    let threads = args
        .common
        .hash_threads
        .unwrap_or_else(hashing::default_threads);
    let state = web::Data::new(OldInstance {
        port: args.port,
        accounts,
        hashing: HashingPool::start(threads, args.common.login_queue)
            .context("cannot start the password-hashing threads")?,
    });
    let secure = !args.plain_http;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(middleware(store.clone(), key.clone(), secure))
            .app_data(state.clone())
            .route("/", web::get().to(home))
            .route("/healthz", web::get().to(HttpResponse::Ok))
            .route("/api/login", web::post().to(login))
            .route("/api/logout", web::post().to(logout))
            .route("/api/me", web::get().to(me))
            .route("/api/profile", web::put().to(update_profile))
    })
    .workers(2)
    .bind(("127.0.0.1", args.port))
    .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?
    .run();
    if args.exit_with_parent {
        let handle = server.handle();
        actix_web::rt::spawn(async move {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
            handle.stop(true).await;
        });
    }
    tracing::info!(
        "old instance (actix-session's RedisSessionStore) listening on http://127.0.0.1:{}",
        args.port
    );
    server.await.context("the server failed")
}

/// actix-session's middleware as an application on its own store had it: the same cookie as
/// the new instances' (name, key, attributes).
fn middleware(
    store: RedisSessionStore,
    key: Key,
    secure: bool,
) -> SessionMiddleware<RedisSessionStore> {
    SessionMiddleware::builder(store, key)
        .cookie_name(session_cookie_name(secure).to_owned())
        .cookie_path("/".to_owned())
        .cookie_domain(None)
        .cookie_content_security(CookieContentSecurity::Private)
        .cookie_http_only(true)
        .cookie_same_site(actix_web::cookie::SameSite::Lax)
        .cookie_secure(secure)
        .build()
}

fn me_of(session: &Session, state: &OldInstance) -> actix_web::Result<Me> {
    Ok(Me {
        user: user::current(session)?,
        display_name: user::display_name(session)?,
        instance: state.port,
        store: STORE.to_owned(),
        redis: None,
    })
}

#[derive(Template)]
#[template(path = "legacy.html")]
struct HomePage {
    instance: u16,
    user: Option<String>,
    display_name: Option<String>,
}

async fn home(state: web::Data<OldInstance>, session: Session) -> actix_web::Result<HttpResponse> {
    let Me {
        user,
        display_name,
        instance,
        ..
    } = me_of(&session, &state)?;
    render(
        &HomePage {
            instance,
            user,
            display_name,
        },
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(
    req: HttpRequest,
    state: web::Data<OldInstance>,
    session: Session,
    credentials: web::Json<Credentials>,
) -> actix_web::Result<HttpResponse> {
    let Credentials { username, password } = credentials.into_inner();
    let verified = match state
        .accounts
        .verify(&state.hashing, &username, &password)
        .await
    {
        Ok(verified) => verified,
        Err(busy) => return Ok(error(StatusCode::SERVICE_UNAVAILABLE, &busy.to_string())),
    };
    if !verified {
        return Ok(error(
            StatusCode::UNAUTHORIZED,
            "unknown username or wrong password",
        ));
    }
    user::sign_in(&session, &username, &req, state.port)?;
    Ok(HttpResponse::Ok().json(me_of(&session, &state)?))
}

async fn logout(state: web::Data<OldInstance>, session: Session) -> HttpResponse {
    user::sign_out(&session, HttpResponse::Ok()).json(Me {
        user: None,
        display_name: None,
        instance: state.port,
        store: STORE.to_owned(),
        redis: None,
    })
}

async fn me(state: web::Data<OldInstance>, session: Session) -> actix_web::Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(me_of(&session, &state)?))
}

#[derive(Deserialize)]
struct ProfileUpdate {
    display_name: String,
}

async fn update_profile(
    state: web::Data<OldInstance>,
    session: Session,
    update: web::Json<ProfileUpdate>,
) -> actix_web::Result<HttpResponse> {
    user::signed_in(&session)?;
    if let Err(message) = user::set_display_name(&session, &update.display_name)? {
        return Ok(error(StatusCode::UNPROCESSABLE_ENTITY, &message));
    }
    Ok(HttpResponse::Ok().json(me_of(&session, &state)?))
}

//! A user's sessions and the session lifecycle: with a `user_entry`, the store keeps an index
//! of each user's sessions in Redis, so any instance can list the devices where a user is
//! signed in, sign one of them out, or sign the user out everywhere; with `publish_events`,
//! every session created, renewed, deleted, revoked, evicted or expired is announced over
//! Redis pub/sub, and this app prints what it hears.
//!
//! ```sh
//! cargo run -p session-store --example users_sessions
//! # alice signs in twice: a laptop (jar) and a phone (jar2)
//! curl -c jar  -A laptop -X POST http://127.0.0.1:8080/login/alice
//! curl -c jar2 -A phone  -X POST http://127.0.0.1:8080/login/alice
//! curl -b jar http://127.0.0.1:8080/sessions               # both, the laptop's marked current
//! curl -b jar -X DELETE http://127.0.0.1:8080/sessions/REF # the phone's, by its reference
//! curl -b jar2 http://127.0.0.1:8080/me                    # nobody: the phone is signed out
//! curl -b jar -X POST http://127.0.0.1:8080/logout-others  # every session but this one
//! curl -b jar -c jar -X POST http://127.0.0.1:8080/logout-everywhere
//! ```
//!
//! Sessions that end by idling out expire inside Redis; they are announced only when the
//! server sends keyspace notifications for expired keys (`redis-cli config set
//! notify-keyspace-events Ex`), which the store never turns on itself.
//!
//! Redis is the one at `REDIS_URL` (by default `redis://127.0.0.1:6379`); the app listens on
//! 127.0.0.1 at `PORT` (by default 8080) until Ctrl-C.

use std::time::SystemTime;

use actix_session::{Session, SessionMiddleware};
use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer, Responder, cookie::Key, http::header, web,
};
use futures_util::StreamExt;
use serde_json::json;
use session_store::{CurrentSession, RedisSessionStore, SessionNotice, TrackChanges};

/// The session entry that holds the signed-in user: the store indexes sessions by its value.
const USER: &str = "user";
/// An entry the session list shows beside each session, to tell the devices apart.
const USER_AGENT: &str = "user_agent";

/// The signed-in user, or `401`.
fn signed_in(session: &Session) -> actix_web::Result<String> {
    session
        .get::<String>(USER)?
        .ok_or_else(|| actix_web::error::ErrorUnauthorized("not signed in\n"))
}

/// Signs `user` in (a real app checks a password first), keeping the device's user agent.
async fn login(
    session: Session,
    request: HttpRequest,
    user: web::Path<String>,
) -> actix_web::Result<impl Responder> {
    // A fresh id at login; the store indexes the session under its user as it writes it.
    session.renew();
    session.insert(USER, user.as_str())?;
    let agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|agent| agent.to_str().ok())
        .unwrap_or("unknown");
    session.insert(USER_AGENT, agent)?;
    Ok(format!("signed in as {user}\n"))
}

async fn me(session: Session) -> actix_web::Result<impl Responder> {
    let user = session.get::<String>(USER)?;
    Ok(format!("{}\n", user.as_deref().unwrap_or("nobody")))
}

/// The signed-in user's sessions, oldest first, this one marked `current`.
///
/// `CurrentSession` names the request's own session; it works behind `TrackChanges`.
async fn sessions(
    store: web::Data<RedisSessionStore>,
    session: Session,
    current: CurrentSession,
) -> actix_web::Result<impl Responder> {
    let user = signed_in(&session)?;
    // A `StoreError` answers for itself: `503` with `Retry-After` when Redis is unavailable.
    let list = store.sessions_of(&user, &current).await?;
    let time = |at: SystemTime| humantime::format_rfc3339_seconds(at).to_string();
    let list: Vec<_> = list
        .iter()
        .map(|listed| {
            json!({
                "reference": listed.reference,
                "current": listed.current,
                "created": time(listed.created),
                "last_seen": time(listed.last_seen),
                "expires": time(listed.expires),
                "user_agent": listed.entry::<String>(USER_AGENT),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// Signs out one of the user's sessions, by the reference the list gave: its very next
/// request, on any instance, is anonymous.
async fn revoke(
    store: web::Data<RedisSessionStore>,
    session: Session,
    reference: web::Path<String>,
) -> actix_web::Result<impl Responder> {
    let user = signed_in(&session)?;
    Ok(if store.revoke(&user, &reference).await? {
        HttpResponse::NoContent().finish()
    } else {
        HttpResponse::NotFound().body("none of your sessions\n")
    })
}

/// Signs out every session of the user but this one.
async fn logout_others(
    store: web::Data<RedisSessionStore>,
    session: Session,
    current: CurrentSession,
) -> actix_web::Result<impl Responder> {
    let user = signed_in(&session)?;
    let revoked = store.revoke_all(&user, Some(&current)).await?;
    Ok(HttpResponse::Ok().json(json!({ "revoked": revoked })))
}

/// Signs out every session of the user, this one included.
async fn logout_everywhere(
    store: web::Data<RedisSessionStore>,
    session: Session,
) -> actix_web::Result<impl Responder> {
    let user = signed_in(&session)?;
    let revoked = store.revoke_all(&user, None).await?;
    // This session is gone in Redis already; purging it clears its cookie too.
    session.purge();
    Ok(HttpResponse::Ok().json(json!({ "revoked": revoked })))
}

async fn logout(session: Session) -> impl Responder {
    session.purge();
    HttpResponse::Ok().body("signed out\n")
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(8080);

    let store = RedisSessionStore::builder()
        // The entry that names the user: sessions are indexed by it (and sessions without it,
        // visitors who never signed in, get a shorter idle timeout).
        .user_entry(USER)
        // The entries `sessions_of` hands out of each session.
        .exposed_entries([USER_AGENT])
        // Announce the lifecycle over Redis pub/sub, naming this instance.
        .publish_events(true)
        .instance_label(format!("127.0.0.1:{port}"))
        .build_with_url(&redis_url)
        .map_err(std::io::Error::other)?;
    if let Err(error) = store.health_check().await {
        eprintln!(
            "Redis at {redis_url} does not answer ({}): start one with `redis-server`",
            error.chain()
        );
        eprintln!("or name another in REDIS_URL.");
        std::process::exit(1);
    }

    // One subscription per process: it hears every instance on this Redis with this key
    // prefix, and connects again by itself after Redis restarts.
    let mut events = store.events();
    actix_web::rt::spawn(async move {
        while let Some(notice) = events.next().await {
            match notice {
                // The event as published: small JSON that names the session by its
                // reference, never by its id.
                SessionNotice::Event(event) => match serde_json::to_string(&event) {
                    Ok(json) => println!("session event: {json}"),
                    Err(error) => eprintln!("session event that does not serialize: {error}"),
                },
                SessionNotice::Reconnected => {
                    println!("session events: Redis is back; events in between were missed")
                }
                SessionNotice::Lagged => println!("session events: fell behind, some dropped"),
                _ => {}
            }
        }
    });

    // Load the key from configuration in a real app: every instance needs the same one.
    let key = Key::generate();

    println!(
        "Listening on http://127.0.0.1:{port}/ (sessions in Redis at {redis_url}); Ctrl-C stops it"
    );
    HttpServer::new(move || {
        let sessions_middleware = SessionMiddleware::builder(store.clone(), key.clone())
            // Plain HTTP in this example; keep `Secure` cookies behind HTTPS.
            .cookie_secure(false)
            .build();
        App::new()
            .app_data(web::Data::new(store.clone()))
            .wrap(TrackChanges::new(sessions_middleware))
            .route("/login/{user}", web::post().to(login))
            .route("/me", web::get().to(me))
            .route("/sessions", web::get().to(sessions))
            .route("/sessions/{reference}", web::delete().to(revoke))
            .route("/logout-others", web::post().to(logout_others))
            .route("/logout-everywhere", web::post().to(logout_everywhere))
            .route("/logout", web::post().to(logout))
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}

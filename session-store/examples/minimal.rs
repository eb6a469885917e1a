//! The smallest app on the store: a login that puts a user in the session, a page that reads
//! it, and a logout. The sessions live in Redis, so any number of instances of this app, given
//! the same cookie key, share them.
//!
//! ```sh
//! cargo run -p session-store --example minimal
//! curl -c jar -X POST http://127.0.0.1:8080/login/alice    # signed in as alice
//! curl -b jar http://127.0.0.1:8080/me                      # alice
//! curl -b jar -c jar -X POST http://127.0.0.1:8080/logout   # signed out
//! curl -b jar http://127.0.0.1:8080/me                      # nobody
//! ```
//!
//! Redis is the one at `REDIS_URL` (by default `redis://127.0.0.1:6379`); the app listens on
//! 127.0.0.1 at `PORT` (by default 8080) until Ctrl-C.

use actix_session::{Session, SessionMiddleware};
use actix_web::{App, HttpResponse, HttpServer, Responder, cookie::Key, web};
use session_store::{RedisSessionStore, TrackChanges};

/// Signs `user` in. A real app checks a password first (and throttles the guesses: see the
/// store's `login_throttle`).
async fn login(session: Session, user: web::Path<String>) -> actix_web::Result<impl Responder> {
    // A fresh session id at every login, so that an id planted before it (session fixation)
    // leads nowhere afterwards.
    session.renew();
    session.insert("user", user.as_str())?;
    Ok(format!("signed in as {user}\n"))
}

/// Who the session belongs to. A read: one Redis round trip, which also slides the session's
/// idle expiry.
async fn me(session: Session) -> actix_web::Result<impl Responder> {
    let user = session.get::<String>("user")?;
    Ok(format!("{}\n", user.as_deref().unwrap_or("nobody")))
}

/// Signs out: the session is deleted in Redis, so its cookie leads nowhere on any instance,
/// and a request of it still in flight cannot bring it back.
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

    // The defaults suit most apps: a 30 min idle timeout, a 12 h absolute lifetime, 64 KiB of
    // state at most, and 1 s timeouts for every step of a Redis call.
    let store = RedisSessionStore::builder()
        .build_with_url(&redis_url)
        .map_err(std::io::Error::other)?;
    // Building connects to nothing: ask once, so that a missing Redis is said at start.
    if let Err(error) = store.health_check().await {
        eprintln!(
            "Redis at {redis_url} does not answer ({}): start one with `redis-server`",
            error.chain()
        );
        eprintln!("or name another in REDIS_URL.");
        std::process::exit(1);
    }

    // Signs (and encrypts) the cookies. Every instance must use the same key, and a restart
    // must keep it, or every cookie stops working: load it from configuration in a real app.
    let key = Key::generate();

    println!(
        "Listening on http://127.0.0.1:{port}/ (sessions in Redis at {redis_url}); Ctrl-C stops it"
    );
    HttpServer::new(move || {
        // TrackChanges wraps actix-session's middleware: each request writes only the entries
        // it changed, so overlapping requests of one session lose nothing, and a Redis that
        // does not answer gets `503` with `Retry-After` instead of a bare `500`.
        let sessions = SessionMiddleware::builder(store.clone(), key.clone())
            // This example serves plain HTTP: a `Secure` cookie would not come back over it.
            // Keep the default (`Secure`) behind HTTPS.
            .cookie_secure(false)
            .build();
        App::new()
            .wrap(TrackChanges::new(sessions))
            .route("/login/{user}", web::post().to(login))
            .route("/me", web::get().to(me))
            .route("/logout", web::post().to(logout))
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}

//! The demo application. Its full scope (several instances, login pages) is still to come;
//! for now it serves one instance that counts visits in a shared session.

use actix_session::{Session, SessionMiddleware};
use actix_web::{App, HttpServer, Responder, cookie::Key, web};
use session_store::RedisSessionStore;

async fn visits(session: Session) -> actix_web::Result<impl Responder> {
    let visits = session.get::<u32>("visits")?.unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    Ok(format!("visit number {visits}\n"))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let store = RedisSessionStore::from_url(&redis_url).map_err(std::io::Error::other)?;
    let key = Key::generate();
    HttpServer::new(move || {
        App::new()
            .wrap(SessionMiddleware::new(store.clone(), key.clone()))
            .route("/", web::get().to(visits))
    })
    .bind(("127.0.0.1", 8081))?
    .run()
    .await
}

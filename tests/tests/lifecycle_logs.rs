//! The session lifecycle reaches the logs (OWASP's events), and no session id ever does.

use std::time::{Duration, Instant};

use actix_web::{
    cookie::{Cookie, CookieJar, Key},
    http::Method,
};
use integration_tests::{
    CapturedLogs, RedisServer,
    session_app::{
        COOKIE, Gate, MiddlewareMode, forge_cookie, get_entry, log_in, send, session_cookie,
        tracked_app,
    },
};
use session_store::RedisSessionStore;

/// The session id inside an encrypted cookie.
fn session_id(key: &Key, cookie: &Cookie<'static>) -> String {
    let mut jar = CookieJar::new();
    jar.add_original(cookie.clone());
    jar.private(key)
        .get(COOKIE)
        .expect("a cookie of this key")
        .value()
        .to_owned()
}

#[actix_web::test]
async fn lifecycle_events_are_logged_without_ids() {
    let logs = CapturedLogs::start(tracing_subscriber::filter::LevelFilter::DEBUG);

    let server = RedisServer::start();
    let key = Key::generate();
    let mode = MiddlewareMode::COOKIE_MODES[0].clone();
    let lifetime = Duration::from_secs(2);
    let store = server.store_with(RedisSessionStore::builder().absolute_timeout(lifetime));
    let gate = Gate::default();
    let app = tracked_app(store, &key, mode.clone(), gate.clone()).await;
    let mut ids = Vec::new();

    // To be presented again once past its absolute lifetime.
    let short_lived = log_in(&app).await;
    let born = Instant::now();
    ids.push(session_id(&key, &short_lived));

    let login = log_in(&app).await;
    ids.push(session_id(&key, &login));
    let renewed = session_cookie(&send(&app, Method::POST, "/renew", Some(&login)).await)
        .expect("a renewed cookie");
    ids.push(session_id(&key, &renewed));
    assert_eq!(get_entry(&app, "user", Some(&login)).await, "none");

    // A write that loaded the session before a logout, and writes after it.
    let (write, logout) = futures_util::join!(
        send(&app, Method::POST, "/gated-set/cart/full", Some(&renewed)),
        async {
            gate.wait_for(1).await;
            let logout = send(&app, Method::POST, "/purge", Some(&renewed)).await;
            gate.open();
            logout
        }
    );
    assert_eq!(
        (write.status().as_u16(), logout.status().as_u16()),
        (200, 200)
    );

    let forged = forge_cookie(&key, mode.security, "not-an-id-of-ours");
    assert_eq!(get_entry(&app, "user", Some(&forged)).await, "none");

    tokio::time::sleep((lifetime + Duration::from_millis(100)).saturating_sub(born.elapsed()))
        .await;
    assert_eq!(get_entry(&app, "user", Some(&short_lived)).await, "none");

    let text = logs.text();
    for event in [
        "session.created",
        "session.deleted",
        "session.unknown",
        "session.invalid_id",
        "session.expired",
        "session.update_dropped",
    ] {
        assert!(text.contains(event), "no {event} in:\n{text}");
    }
    for id in ids {
        assert!(!text.contains(&id), "an id reached the logs:\n{text}");
    }
    assert!(
        !text.contains("not-an-id-of-ours"),
        "a forged id reached the logs:\n{text}"
    );
}

//! The cookie key ring (`TrackChanges::with_keys`): a cookie sealed by a previous key opens
//! the same session and comes back sealed by the current key, with no Redis write; a cookie
//! under no key of the ring is no session; and the rotation across instances, one restart at a
//! time under load, logs nobody out.

use actix_session::config::CookieContentSecurity;
use actix_web::{
    cookie::{Cookie, CookieJar, Key},
    http::{Method, header},
    web,
};
use integration_tests::{
    Monitor, RedisServer,
    session_app::{COOKIE, Gate, TestApp, get_entry, routes, send, session_cookie},
};
use session_store::{CookieKeys, RedisSessionStore, TrackChanges};

/// The test routes behind `TrackChanges` with `keys`, on `store`.
async fn app(store: RedisSessionStore, keys: CookieKeys) -> impl TestApp + use<> {
    actix_web::test::init_service(
        actix_web::App::new()
            .wrap(TrackChanges::with_keys(store.clone(), keys, |cookie| {
                cookie.cookie_secure(false)
            }))
            .app_data(web::Data::new(Gate::default()))
            .app_data(web::Data::new(store))
            .configure(routes),
    )
    .await
}

/// The session key a cookie carries, when `key` opens it.
fn opened(cookie: &Cookie<'static>, key: &Key, security: CookieContentSecurity) -> Option<String> {
    let mut jar = CookieJar::new();
    jar.add_original(cookie.clone());
    let opened = match security {
        CookieContentSecurity::Private => jar.private(key).get(COOKIE),
        CookieContentSecurity::Signed => jar.signed(key).get(COOKIE),
    };
    opened.map(|cookie| cookie.value().to_owned())
}

/// The commands clients sent that `monitor` saw since the last call.
async fn sent(monitor: &Monitor) -> Vec<String> {
    monitor
        .take()
        .await
        .into_iter()
        .filter(|command| !command.from_script)
        .map(|command| command.name)
        .collect()
}

#[actix_web::test]
async fn a_cookie_of_a_previous_key_is_the_same_session_reissued_under_the_current_one() {
    for security in [
        CookieContentSecurity::Private,
        CookieContentSecurity::Signed,
    ] {
        let server = RedisServer::start();
        let store = server.store();
        let (old, new) = (Key::generate(), Key::generate());
        let before = app(
            store.clone(),
            CookieKeys::new(old.clone()).content_security(security),
        )
        .await;
        let login = send(&before, Method::POST, "/set/user/alice", None).await;
        let old_cookie = session_cookie(&login).expect("a session cookie");
        let session_key = opened(&old_cookie, &old, security).expect("sealed by the old key");

        let rotated = CookieKeys::new(new.clone())
            .previous([old.clone()])
            .content_security(security);
        let after = app(store.clone(), rotated).await;
        let monitor = Monitor::start(&server.client()).await;
        let request = actix_web::test::TestRequest::get()
            .uri("/get/user")
            .insert_header((
                header::COOKIE,
                format!("theme=dark; {}; lang=en", old_cookie.encoded()),
            ))
            .to_request();
        let response = actix_web::test::call_service(&after, request).await;
        assert_eq!(response.status(), 200);
        let reissued = session_cookie(&response).expect("the cookie re-issued");
        assert_eq!(
            opened(&reissued, &new, security).as_deref(),
            Some(session_key.as_str()),
            "the same session, sealed by the new key ({security:?})"
        );
        assert_eq!(opened(&reissued, &old, security), None);
        let body = actix_web::test::read_body(response).await;
        assert_eq!(body, "alice");
        assert_eq!(sent(&monitor).await, ["hgetall", "pexpire"], "no write");

        // Requests with the new cookie need no re-issue.
        assert_eq!(get_entry(&after, "user", Some(&reissued)).await, "alice");
        // A ring without the old key: its cookies are no session.
        let dropped = app(
            store.clone(),
            CookieKeys::new(new.clone()).content_security(security),
        )
        .await;
        assert_eq!(get_entry(&dropped, "user", Some(&old_cookie)).await, "none");
        assert_eq!(get_entry(&dropped, "user", Some(&reissued)).await, "alice");
        // A cookie under a key never in the ring is no session either.
        let stranger = app(
            store.clone(),
            CookieKeys::new(Key::generate())
                .previous([Key::generate()])
                .content_security(security),
        )
        .await;
        assert_eq!(
            get_entry(&stranger, "user", Some(&old_cookie)).await,
            "none"
        );
    }
}

#[actix_web::test]
async fn a_logout_with_a_cookie_of_a_previous_key_ends_the_session() {
    let server = RedisServer::start();
    let store = server.store();
    let (old, new) = (Key::generate(), Key::generate());
    let before = app(store.clone(), CookieKeys::new(old.clone())).await;
    let login = send(&before, Method::POST, "/set/user/bob", None).await;
    let old_cookie = session_cookie(&login).expect("a session cookie");

    let after = app(store.clone(), CookieKeys::new(new).previous([old])).await;
    let logout = send(&after, Method::POST, "/purge", Some(&old_cookie)).await;
    assert_eq!(logout.status(), 200);
    let cleared = session_cookie(&logout).expect("the cookie cleared");
    assert_eq!(
        cleared.value(),
        "",
        "a logout clears the cookie, re-issues nothing"
    );
    assert_eq!(get_entry(&after, "user", Some(&old_cookie)).await, "none");
    assert_eq!(server.keys("session:s:*").await, Vec::<String>::new());
}

#[actix_web::test]
async fn a_write_with_a_cookie_of_a_previous_key_is_kept_and_reissued() {
    let server = RedisServer::start();
    let store = server.store();
    let (old, new) = (Key::generate(), Key::generate());
    let before = app(store.clone(), CookieKeys::new(old.clone())).await;
    let login = send(&before, Method::POST, "/set/user/carol", None).await;
    let old_cookie = session_cookie(&login).expect("a session cookie");

    let after = app(store.clone(), CookieKeys::new(new.clone()).previous([old])).await;
    let write = send(&after, Method::POST, "/set/theme/dark", Some(&old_cookie)).await;
    let reissued = session_cookie(&write).expect("the cookie re-issued");
    assert!(opened(&reissued, &new, CookieContentSecurity::Private).is_some());
    assert_eq!(get_entry(&after, "theme", Some(&reissued)).await, "dark");
    assert_eq!(get_entry(&after, "user", Some(&reissued)).await, "carol");
}

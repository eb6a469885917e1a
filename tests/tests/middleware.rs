//! The store behind actix-session's `SessionMiddleware`, request by request, in both cookie
//! modes (signed and encrypted).

use std::time::Duration;

use actix_web::{cookie::Key, http::Method};
use integration_tests::{
    Monitor, RedisServer,
    session_app::{
        self, Gate, MiddlewareMode, TestApp, app, bare_app, forge_cookie, get_entry, log_in, race,
        send, session_cookie, start_session,
    },
};
use redis::AsyncCommands as _;
use session_store::RedisSessionStore;

async fn session_keys(server: &RedisServer) -> Vec<String> {
    server.keys("session:s:*").await
}

#[actix_web::test]
async fn insert_read_change_renew_purge() {
    for mode in MiddlewareMode::COOKIE_MODES {
        let (server, _, app) = server_and_app(&mode).await;

        let anonymous = send(&app, Method::GET, "/get/user", None).await;
        assert!(
            session_cookie(&anonymous).is_none(),
            "{mode:?}: a cookie for nothing"
        );
        assert!(session_keys(&server).await.is_empty());

        let first = start_session(&app, "/set/user/alice").await;
        assert_eq!(get_entry(&app, "user", Some(&first)).await, "alice");

        send(&app, Method::POST, "/set/user/bob", Some(&first)).await;
        send(&app, Method::POST, "/set/theme/dark", Some(&first)).await;
        assert_eq!(get_entry(&app, "user", Some(&first)).await, "bob");
        assert_eq!(get_entry(&app, "theme", Some(&first)).await, "dark");
        send(&app, Method::POST, "/remove/theme", Some(&first)).await;
        assert_eq!(get_entry(&app, "theme", Some(&first)).await, "none");

        let renewed = send(&app, Method::POST, "/renew", Some(&first)).await;
        let second = session_cookie(&renewed).expect("a renewed cookie");
        assert_ne!(first.value(), second.value(), "{mode:?}: renew kept the id");
        assert_eq!(
            get_entry(&app, "user", Some(&first)).await,
            "none",
            "old id lives"
        );
        assert_eq!(get_entry(&app, "user", Some(&second)).await, "bob");
        assert_eq!(session_keys(&server).await.len(), 1);

        let logout = send(&app, Method::POST, "/purge", Some(&second)).await;
        let removal = session_cookie(&logout).expect("a removal cookie");
        assert_eq!(
            removal.value(),
            "",
            "{mode:?}: logout did not clear the cookie"
        );
        assert_eq!(get_entry(&app, "user", Some(&second)).await, "none");
        assert!(session_keys(&server).await.is_empty());
    }
}

/// A server, a key and the middleware alone (no `TrackChanges`) in `mode` on the server.
async fn server_and_app(mode: &MiddlewareMode) -> (RedisServer, Key, impl TestApp + use<>) {
    let server = RedisServer::start();
    let key = Key::generate();
    let app = bare_app(server.store(), &key, mode.clone(), Gate::default()).await;
    (server, key, app)
}

/// The one session key in Redis, and its creation time.
async fn the_session(server: &RedisServer) -> (String, u64) {
    let keys = session_keys(server).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let created: u64 = server
        .connection()
        .await
        .hget(&keys[0], "\0c")
        .await
        .expect("HGET");
    (keys[0].clone(), created)
}

async fn pttl(server: &RedisServer, key: &str) -> i64 {
    server.connection().await.pttl(key).await.expect("PTTL")
}

#[actix_web::test]
async fn a_renewal_keeps_the_creation_time_and_a_login_starts_a_new_one() {
    let server = RedisServer::start();
    let store = server.store_with(RedisSessionStore::builder().user_entry("user"));
    let app = app(store, &Key::generate()).await;

    let cookie = start_session(&app, "/login/alice").await;
    let (first_key, created) = the_session(&server).await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let renewed = send(&app, Method::POST, "/renew", Some(&cookie)).await;
    let cookie = session_cookie(&renewed).expect("a renewed cookie");
    let (renewed_key, renewed_created) = the_session(&server).await;
    assert_ne!(renewed_key, first_key, "a new id");
    assert_eq!(renewed_created, created, "a renewal keeps the lifetime");

    let again = send(&app, Method::POST, "/login/alice", Some(&cookie)).await;
    let cookie = session_cookie(&again).expect("a cookie");
    assert_eq!(
        the_session(&server).await.1,
        created,
        "the same user again is no change of owner"
    );

    send(&app, Method::POST, "/login/bob", Some(&cookie)).await;
    let (_, bob_created) = the_session(&server).await;
    assert!(bob_created > created, "another user starts a new lifetime");
}

#[actix_web::test]
async fn without_a_user_entry_every_renewal_keeps_the_creation_time() {
    let server = RedisServer::start();
    let app = app(server.store(), &Key::generate()).await;

    let cookie = start_session(&app, "/login/alice").await;
    let (_, created) = the_session(&server).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    send(&app, Method::POST, "/login/bob", Some(&cookie)).await;
    assert_eq!(the_session(&server).await.1, created);
}

#[actix_web::test]
async fn a_session_without_its_user_slides_by_the_anonymous_timeout() {
    let server = RedisServer::start();
    let anonymous = Duration::from_secs(20);
    let store = server.store_with(
        RedisSessionStore::builder()
            .user_entry("user")
            .idle_timeout(Duration::from_secs(600))
            .anonymous_idle_timeout(anonymous),
    );
    let app = app(store, &Key::generate()).await;
    let short = |pttl: i64| (1..=20_000).contains(&pttl);
    let long = |pttl: i64| pttl > 20_000;

    let visitor = start_session(&app, "/set/theme/dark").await;
    let (session, _) = the_session(&server).await;
    assert!(short(pttl(&server, &session).await), "saved without a user");
    assert_eq!(get_entry(&app, "theme", Some(&visitor)).await, "dark");
    assert!(
        short(pttl(&server, &session).await),
        "a read slides it by the short timeout"
    );

    let login = send(&app, Method::POST, "/set/user/alice", Some(&visitor)).await;
    let signed_in = session_cookie(&login).expect("the write that adds the user renames the class");
    assert_ne!(signed_in.value(), visitor.value());
    assert!(
        long(pttl(&server, &session).await),
        "the user's write switched it"
    );
    assert_eq!(get_entry(&app, "user", Some(&signed_in)).await, "alice");
    assert!(
        long(pttl(&server, &session).await),
        "a read slides it by the long timeout"
    );

    let logout = send(&app, Method::POST, "/remove/user", Some(&signed_in)).await;
    assert!(session_cookie(&logout).is_some());
    assert!(
        short(pttl(&server, &session).await),
        "losing the user switches it back"
    );
}

/// A test service with the middleware alone (no `TrackChanges`), encrypted cookies and
/// actix-session's default TTL policy.
async fn plain_app(store: RedisSessionStore, key: &Key) -> impl TestApp + use<> {
    let mode = MiddlewareMode::COOKIE_MODES[0].clone();
    bare_app(store, key, mode, Gate::default()).await
}

#[actix_web::test]
async fn reads_slide_the_idle_expiry_and_an_idle_session_expires() {
    let server = RedisServer::start();
    let key = Key::generate();
    let builder = RedisSessionStore::builder().idle_timeout(Duration::from_secs(600));
    let app = plain_app(server.store_with(builder), &key).await;
    let cookie = log_in(&app).await;
    let (session, _) = the_session(&server).await;
    let mut redis = server.connection().await;
    let () = redis.pexpire(&session, 5_000).await.expect("PEXPIRE");
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
    assert!(
        pttl(&server, &session).await > 500_000,
        "the read slid the expiry"
    );

    let builder = RedisSessionStore::builder().idle_timeout(Duration::from_millis(300));
    let app = plain_app(server.store_with(builder), &key).await;
    let cookie = log_in(&app).await;
    let gone = async {
        while session_keys(&server).await.len() > 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("the session expires");
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "none");
}

#[actix_web::test]
async fn the_absolute_lifetime_ends_an_active_session() {
    let server = RedisServer::start();
    let builder = RedisSessionStore::builder()
        .idle_timeout(Duration::from_secs(60))
        .absolute_timeout(Duration::from_secs(3600));
    let app = plain_app(server.store_with(builder), &Key::generate()).await;
    let cookie = log_in(&app).await;
    // As if the session had been in use for 59 minutes, then for 61.
    let (session, created) = the_session(&server).await;
    let set_created = |at: u64| {
        let session = session.clone();
        let server = &server;
        async move {
            let () = server
                .connection()
                .await
                .hset(session, "\0c", at)
                .await
                .expect("HSET");
        }
    };
    set_created(created - 59 * 60_000).await;
    send(&app, Method::POST, "/set/clicks/more", Some(&cookie)).await;
    assert_eq!(
        get_entry(&app, "user", Some(&cookie)).await,
        "alice",
        "ended early"
    );
    set_created(created - 61 * 60_000).await;
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "none");
    assert!(session_keys(&server).await.is_empty(), "not deleted");
}

#[actix_web::test]
async fn malformed_cookies_are_no_session_and_reach_no_redis() {
    for mode in MiddlewareMode::COOKIE_MODES {
        let (server, key, app) = server_and_app(&mode).await;
        let monitor = Monitor::start(&server.client()).await;

        let mut cookies = vec![
            actix_web::cookie::Cookie::new(session_app::COOKIE, "not-encrypted-at-all"),
            forge_cookie(
                &Key::generate(),
                mode.security,
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
        ];
        for odd in [
            "",
            "x",
            "*",
            "{tag}",
            "a b",
            "%00",
            &"A".repeat(44),
            &"A".repeat(3000),
        ] {
            cookies.push(forge_cookie(&key, mode.security, odd));
        }
        for cookie in &cookies {
            let response = send(&app, Method::GET, "/get/user", Some(cookie)).await;
            assert_eq!(response.status(), 200, "{mode:?} {cookie}");
            assert!(session_cookie(&response).is_none(), "{mode:?} {cookie}");
        }
        assert_eq!(
            monitor.take().await,
            vec![],
            "{mode:?}: a malformed cookie reached Redis"
        );
    }
}

#[actix_web::test]
async fn a_write_racing_a_logout_does_not_undo_it() {
    for mode in MiddlewareMode::COOKIE_MODES {
        let server = RedisServer::start();
        let key = Key::generate();
        let gate = Gate::default();
        let app = bare_app(server.store(), &key, mode.clone(), gate.clone()).await;
        let cookie = log_in(&app).await;

        // The gated write has loaded the session when the logout lands; then it writes.
        let (slow, _) = race(&app, &gate, &cookie, "/gated-set/cart/full", "/purge").await;
        assert_eq!(slow.status(), 200);
        let after = session_cookie(&slow).unwrap_or_else(|| cookie.clone());
        for name in ["user", "cart"] {
            let value = get_entry(&app, name, Some(&after)).await;
            assert_eq!(value, "none", "{mode:?}: {name}");
        }
        assert!(
            session_keys(&server).await.is_empty(),
            "{mode:?}: the logout was undone"
        );
    }
}

#[actix_web::test]
async fn foreign_or_corrupt_data_at_a_session_key_gives_a_fresh_session() {
    let server = RedisServer::start();
    let app = app(server.store(), &Key::generate()).await;
    let corruptions: [(&str, &str, Option<&str>, &[u8]); 3] = [
        ("no hash", "SET", None, b"a string"),
        (
            "a creation time that is no number",
            "HSET",
            Some("\0c"),
            b"yesterday",
        ),
        (
            "bytes that are not UTF-8",
            "HSET",
            Some("user"),
            &[0xff, 0xfe],
        ),
    ];
    for (what, command, field, value) in corruptions {
        let cookie = log_in(&app).await;
        let (session, _) = the_session(&server).await;
        let mut corrupt = redis::cmd(command);
        corrupt.arg(&session).arg(field).arg(value);
        let () = corrupt
            .query_async(&mut server.connection().await)
            .await
            .expect("corrupting");

        for _ in 0..2 {
            let read = send(&app, Method::GET, "/get/user", Some(&cookie)).await;
            assert_eq!(read.status(), 200, "{what}: no 5xx");
        }
        assert!(
            session_keys(&server).await.is_empty(),
            "{what}: not deleted"
        );
        let write = send(&app, Method::POST, "/set/user/bob", Some(&cookie)).await;
        assert_eq!(write.status(), 200, "{what}");
        let fresh = session_cookie(&write).expect("a fresh session");
        assert_ne!(fresh.value(), cookie.value(), "{what}: a new id");
        assert_eq!(get_entry(&app, "user", Some(&fresh)).await, "bob");
        let () = server.connection().await.flushdb().await.expect("FLUSHDB");
    }
}

/// The raw stored value of entry `name` in the one session in Redis.
async fn raw_entry(server: &RedisServer, name: &str) -> Vec<u8> {
    let (session, _) = the_session(server).await;
    server
        .connection()
        .await
        .hget(&session, name)
        .await
        .expect("HGET")
}

/// Behind `TrackChanges` a write sends only what changed, and also the entries it read in
/// clear that the store seals: once sealing is on, a session's next write seals every value
/// it holds, and a read alone writes nothing.
#[actix_web::test]
async fn a_tracked_write_seals_the_entries_it_read_in_clear() {
    let server = RedisServer::start();
    let key = Key::generate();
    let clear = app(
        server.store_with(RedisSessionStore::builder().seal_entries(false)),
        &key,
    )
    .await;
    let cookie = log_in(&clear).await;
    send(&clear, Method::POST, "/set/theme/dark", Some(&cookie)).await;
    assert_eq!(raw_entry(&server, "theme").await, b"\"dark\"");

    let sealing = app(server.store(), &key).await;
    assert_eq!(get_entry(&sealing, "theme", Some(&cookie)).await, "dark");
    assert_eq!(
        raw_entry(&server, "theme").await,
        b"\"dark\"",
        "a read wrote"
    );
    send(&sealing, Method::POST, "/set/lang/en", Some(&cookie)).await;
    for name in ["user", "theme", "lang"] {
        let stored = raw_entry(&server, name).await;
        assert_eq!(stored[..2], [0, 1], "{name} is not sealed");
    }
    assert_eq!(get_entry(&clear, "theme", Some(&cookie)).await, "dark");
    assert_eq!(get_entry(&sealing, "lang", Some(&cookie)).await, "en");
}

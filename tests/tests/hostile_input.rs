//! Hostile input through actix-session's middleware: none of it gets a `5xx`, reaches Redis as
//! a command it should not, or touches anybody else's session.

use actix_session::config::CookieContentSecurity;
use actix_web::{cookie::Key, http::Method, test::TestRequest};
use integration_tests::{
    Monitor, RedisServer,
    session_app::{
        COOKIE, app, forge_cookie, get_entry, logged_in_app, send, send_request, session_cookie,
        set_entry,
    },
};
use redis::AsyncCommands as _;

/// How [`app`] protects its cookies.
const SECURITY: CookieContentSecurity = CookieContentSecurity::Private;

/// Every key in Redis with its fields and values: what "untouched" is checked against.
async fn snapshot(server: &RedisServer) -> Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)> {
    let mut redis = server.connection().await;
    let mut keys: Vec<String> = redis.keys("*").await.expect("KEYS");
    keys.sort_unstable();
    let mut all = Vec::new();
    for key in keys {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = redis.hgetall(&key).await.expect("HGETALL");
        fields.sort_unstable();
        all.push((key, fields));
    }
    all
}

#[actix_web::test]
async fn hostile_cookies_are_no_session_and_leave_others_untouched() {
    let server = RedisServer::start();
    let key = Key::generate();
    let app = app(server.store(), &key).await;
    let victim = session_cookie(&send(&app, Method::POST, "/set/user/alice", None).await)
        .expect("a session cookie");
    let before = snapshot(&server).await;

    let junk = |value: &str| format!("{COOKIE}={value}");
    let many_cookies = (0..500)
        .map(|i| junk(&format!("junk{i}")))
        .collect::<Vec<_>>()
        .join("; ");
    let huge_cookie = junk(&"A".repeat(256 * 1024));
    let redis_special = [
        "*",
        "{session}",
        "a b",
        "\r\nFLUSHALL\r\n",
        "\0",
        "session:*",
        "%0D%0AFLUSHALL",
    ]
    .map(|value| {
        let forged = forge_cookie(&key, SECURITY, value);
        format!("{}={}", forged.name(), forged.value())
    });
    let redis_special_count = redis_special.len();
    let monitor = Monitor::start(&server.client()).await;
    for header in [many_cookies, huge_cookie].into_iter().chain(redis_special) {
        for (method, path) in [(Method::GET, "/get/user"), (Method::POST, "/set/cart/1")] {
            let request = TestRequest::default()
                .method(method.clone())
                .uri(path)
                .insert_header(("cookie", header.clone()));
            let response = send_request(&app, request).await;
            assert!(
                response.status().is_success(),
                "{method} {path} with {:.80}: {}",
                header,
                response.status()
            );
            if method == Method::GET {
                assert_eq!(actix_web::test::read_body(response).await, "none");
            }
        }
    }
    // Each POST made a fresh session (a new visitor's, one save script); nothing else reached
    // Redis.
    let sent: Vec<_> = monitor
        .take()
        .await
        .into_iter()
        .filter(|command| !command.from_script)
        .map(|command| command.name)
        .collect();
    assert_eq!(sent, vec!["evalsha"; 2 + redis_special_count], "{sent:#?}");
    let after = snapshot(&server).await;
    assert!(
        before.iter().all(|session| after.contains(session)),
        "a session changed"
    );
    assert_eq!(get_entry(&app, "user", Some(&victim)).await, "alice");
}

#[actix_web::test]
async fn a_never_issued_id_is_no_session_and_creates_nothing() {
    let server = RedisServer::start();
    let key = Key::generate();
    let app = app(server.store(), &key).await;
    let before = snapshot(&server).await;
    // Authentic cookie, well-formed id, never issued: e.g. guessed, or from another deployment.
    let guessed = forge_cookie(
        &key,
        SECURITY,
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    let response = send(&app, Method::GET, "/get/user", Some(&guessed)).await;
    assert_eq!(response.status(), 200);
    assert!(session_cookie(&response).is_none());
    assert_eq!(snapshot(&server).await, before, "a lookup created a key");

    // Writing through it makes a fresh session under a new id: the guessed one stays unused.
    let write = send(&app, Method::POST, "/set/user/mallory", Some(&guessed)).await;
    assert_eq!(write.status(), 200);
    let issued = session_cookie(&write).expect("a fresh session");
    assert_ne!(issued.value(), guessed.value());
    assert_eq!(get_entry(&app, "user", Some(&guessed)).await, "none");
}

#[actix_web::test]
async fn state_over_the_limit_is_413_and_the_stored_state_kept() {
    let server = RedisServer::start();
    let store = server.store_with(session_store::RedisSessionStore::builder().max_state_size(1024));
    let (app, cookie) = logged_in_app(store).await;
    let before = snapshot(&server).await;

    let big = "x".repeat(2048);
    let response = set_entry(&app, "cart", &big, Some(&cookie)).await;
    assert_eq!(response.status(), 413);
    assert!(response.headers().get("set-cookie").is_none());
    let fresh = set_entry(&app, "cart", &big, None).await;
    assert_eq!(fresh.status(), 413, "a new session over the limit");
    assert_eq!(snapshot(&server).await, before, "the stored state changed");
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
}

#[actix_web::test]
async fn entry_names_and_values_with_odd_bytes_round_trip() {
    let server = RedisServer::start();
    let (app, cookie) = logged_in_app(server.store()).await;
    // Percent-encoded in the path: NUL (what metadata fields start with), CR/LF, `*`, `{}`,
    // a space, non-ASCII.
    for (encoded, decoded) in [
        ("%00c", "\0c"),
        ("%00", "\0"),
        ("a%0D%0Ab", "a\r\nb"),
        ("%2A%7B%7D%20", "*{} "),
        ("%C3%A9%E6%97%A5", "é日"),
    ] {
        let set = set_entry(&app, encoded, encoded, Some(&cookie)).await;
        assert_eq!(set.status(), 200, "{decoded:?}");
        assert_eq!(get_entry(&app, encoded, Some(&cookie)).await, decoded);
    }
    assert_eq!(
        get_entry(&app, "user", Some(&cookie)).await,
        "alice",
        "an entry overwrote the session's metadata"
    );
}

/// The limit is exact over HTTP: a state of exactly the limit is written, one byte more is
/// `413` and leaves the stored state as it was.
#[actix_web::test]
async fn a_state_of_exactly_the_limit_is_written_and_one_byte_more_is_413() {
    const LIMIT: usize = 1024;
    let server = RedisServer::start();
    let store =
        server.store_with(session_store::RedisSessionStore::builder().max_state_size(LIMIT));
    let (app, cookie) = logged_in_app(store).await;
    // Names plus values as stored: `user` + `"alice"`, then `cart` + the quoted value, each
    // value with 30 bytes of sealing.
    let room = LIMIT - ("user".len() + "\"alice\"".len() + 30) - ("cart".len() + 2 + 30);

    let over = set_entry(&app, "cart", &"y".repeat(room + 1), Some(&cookie)).await;
    assert_eq!(over.status(), 413, "one byte over the limit");
    assert_eq!(get_entry(&app, "cart", Some(&cookie)).await, "none");

    let at = "x".repeat(room);
    let exact = set_entry(&app, "cart", &at, Some(&cookie)).await;
    assert_eq!(exact.status(), 200, "exactly the limit");
    assert_eq!(get_entry(&app, "cart", Some(&cookie)).await, at);
}

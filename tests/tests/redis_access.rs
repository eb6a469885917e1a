//! How the store reaches Redis: as an ACL user allowed only its key prefix and commands, and
//! over TLS with a private CA.

use actix_web::{cookie::Key, http::Method};
use integration_tests::{
    RedisServer,
    session_app::{
        Gate, MiddlewareMode, app, bare_app, send, tracked_app, walk_through_every_operation,
    },
    tls::TlsRedis,
};
use session_store::{RedisSessionStore, StoreError};

/// The rules of the ACL line in `docs/security.md` (the store's commands, on keys under its
/// prefix `session:` and pub/sub channels under it, nothing else), with the test's password:
/// what the docs tell operators to run is what this suite tries.
fn acl_rules() -> String {
    const SECURITY: &str = include_str!("../../docs/security.md");
    SECURITY
        .lines()
        .find_map(|line| line.strip_prefix("ACL SETUSER sessions "))
        .expect("docs/security.md has an `ACL SETUSER sessions` line")
        .replace(">CHANGE-ME", ">session-password")
}

/// Creates the ACL user `sessions` with `rules` and returns its URL.
async fn acl_user(server: &RedisServer, rules: &str) -> String {
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("sessions")
        .arg(rules.split_whitespace().collect::<Vec<_>>())
        .query_async(&mut server.connection().await)
        .await
        .expect("ACL SETUSER");
    format!(
        "redis://sessions:session-password@127.0.0.1:{}",
        server.port()
    )
}

#[actix_web::test]
async fn a_least_privileged_acl_user_is_enough() {
    let server = RedisServer::start();
    let url = acl_user(&server, &acl_rules()).await;

    let store = RedisSessionStore::from_url(&url).expect("a valid URL");
    store.health_check().await.expect("PING as the ACL user");
    let key = Key::generate();
    let mode = MiddlewareMode::COOKIE_MODES[0].clone();
    // Without TrackChanges the store writes with its replace script; with it, plain commands.
    walk_through_every_operation(
        &bare_app(store.clone(), &key, mode.clone(), Gate::default()).await,
    )
    .await;
    walk_through_every_operation(&tracked_app(store, &key, mode.clone(), Gate::default()).await)
        .await;
    every_feature_works_as(&url, &key, mode.clone()).await;

    // The near cache as that user: its invalidation link tracks, and every operation works.
    let near = RedisSessionStore::builder()
        .near_cache(100)
        .build_with_url(&url)
        .expect("a valid URL");
    walk_through_every_operation(&tracked_app(near.clone(), &key, mode, Gate::default()).await)
        .await;
    assert!(
        tracks_as(&server, "sessions").await,
        "the near cache's link never tracked as the ACL user"
    );

    // The user really is confined: its own commands on a key outside the prefix, or another
    // command, are refused.
    let mut confined = redis::Client::open(url)
        .expect("a valid URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection as the ACL user");
    for cmd in [
        redis::cmd("HGETALL").arg("other:key").clone(),
        redis::cmd("DEL").arg("other:key").clone(),
        redis::cmd("KEYS").arg("*").clone(),
    ] {
        let err = cmd
            .query_async::<redis::Value>(&mut confined)
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Some("NOPERM"), "{err}");
    }
}

/// Whether a client of `user` tracks keys on `server` (`CLIENT LIST` shows its `t` flag)
/// within 5 s.
async fn tracks_as(server: &RedisServer, user: &str) -> bool {
    let mut admin = server.connection().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut admin)
            .await
            .expect("CLIENT LIST");
        let tracking = clients.lines().any(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            fields.contains(&format!("user={user}").as_str())
                && fields.iter().any(|field| {
                    field
                        .strip_prefix("flags=")
                        .is_some_and(|f| f.contains('t'))
                })
        });
        if tracking {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// The user index, events, the login throttle and `location`, as the user of `url`.
async fn every_feature_works_as(url: &str, key: &Key, mode: MiddlewareMode) {
    use futures_util::StreamExt as _;
    use session_store::{SessionNotice, ThrottleLimits};

    let store = RedisSessionStore::builder()
        .user_entry("user")
        .exposed_entries(["user"])
        .publish_events(true)
        .max_sessions_per_user(2)
        .build_with_url(url)
        .expect("a valid URL");
    let mut events = store.events();
    let app = tracked_app(store.clone(), key, mode, Gate::default()).await;
    let mut logins = Vec::new();
    // Logins until one's event arrives: the subscription is live. A subscription that never
    // delivers fails here, within a deadline, rather than hanging the suite.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let first = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no event of {} logins reached the subscriber in 15 s: the ACL user's subscription is broken",
            logins.len()
        );
        let login = send(&app, Method::POST, "/login/alice", None).await;
        assert_eq!(login.status(), 200, "a login with the index and events");
        logins.push(integration_tests::session_app::session_cookie(&login).expect("a cookie"));
        if let Ok(Some(notice)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), events.next()).await
        {
            break notice;
        }
    };
    assert!(matches!(first, SessionNotice::Event(_)), "{first:?}");
    // Logins past the cap evict the oldest; one session revoked by its listed reference.
    for _ in 0..2 {
        let login = send(&app, Method::POST, "/login/alice", None).await;
        assert_eq!(login.status(), 200, "a login past the cap");
        logins.push(integration_tests::session_app::session_cookie(&login).expect("a cookie"));
    }
    let newest = logins.last().expect("a login").clone();
    let listed = send(&app, Method::GET, "/sessions", Some(&newest)).await;
    assert_eq!(listed.status(), 200, "listing");
    let listed: serde_json::Value = serde_json::from_slice(
        &actix_web::body::to_bytes(listed.into_body())
            .await
            .expect("a body"),
    )
    .expect("JSON");
    let other = listed
        .as_array()
        .expect("a list")
        .iter()
        .find(|listed| listed["current"] == false)
        .expect("another session of alice's");
    let path = format!(
        "/revoke/{}",
        other["reference"].as_str().expect("a reference")
    );
    let revoked = send(&app, Method::POST, &path, Some(&newest)).await;
    assert_eq!(revoked.status(), 200, "revoking by reference");
    logins.retain(|login| *login == newest);
    let node = send(&app, Method::GET, "/where", Some(&logins[0])).await;
    assert_eq!(node.status(), 200, "location");
    let revoked = send(&app, Method::POST, "/revoke-others", Some(&logins[0])).await;
    assert_eq!(revoked.status(), 200, "revoking");
    let purged = send(&app, Method::POST, "/purge", Some(&logins[0])).await;
    assert_eq!(purged.status(), 200, "a logout that announces itself");

    let throttle = store.login_throttle(ThrottleLimits::new(
        1,
        10,
        std::time::Duration::from_secs(60),
    ));
    let address = "192.0.2.1".parse().expect("an address");
    let attempt = |account: &'static str| throttle.attempt(account, address);
    attempt("alice")
        .await
        .expect("counting")
        .expect("allowed")
        .failed()
        .await
        .expect("failing");
    assert!(attempt("alice").await.expect("refusing").is_err());
    let bob = attempt("bob").await.expect("counting").expect("allowed");
    bob.not_checked().await.expect("giving back");
    let bob = attempt("bob").await.expect("counting").expect("allowed");
    bob.succeeded().await.expect("clearing");
}

#[actix_web::test]
async fn a_missing_permission_is_a_500_not_a_503() {
    let server = RedisServer::start();
    let url = acl_user(&server, &acl_rules().replace(" +evalsha", "")).await;
    let key = Key::generate();
    let app = app(
        RedisSessionStore::from_url(&url).expect("a valid URL"),
        &key,
    )
    .await;
    let response = send(&app, Method::POST, "/set/user/alice", None).await;
    assert_eq!(response.status(), 500, "a misconfiguration is no outage");
    assert!(response.headers().get("retry-after").is_none());
}

#[actix_web::test]
async fn tls_with_a_private_ca_works_and_an_unknown_ca_is_refused() {
    let redis = TlsRedis::start();
    let client = redis::Client::build_with_tls(
        redis.url(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(redis.ca_pem.clone().into_bytes()),
        },
    )
    .expect("a TLS client");
    let store = RedisSessionStore::builder()
        .build_with_manager(
            session_store::Manager::new(client.get_connection_info().clone())
                .expect("valid addresses"),
        )
        .expect("a valid connection");
    store.health_check().await.expect("PING over TLS");
    let key = Key::generate();
    let app = app(store, &key).await;
    walk_through_every_operation(&app).await;

    // The system's roots do not vouch for the test CA: the connection is refused, for good.
    let untrusting = RedisSessionStore::from_url(&redis.url()).expect("a valid URL");
    let err = untrusting.health_check().await.expect_err("an unknown CA");
    assert!(matches!(err, StoreError::Pool(_)), "{err:?}");
    assert!(
        !err.is_unavailable(),
        "a bad certificate is no outage: {err:?}"
    );
}

//! Overlapping requests of one session: with `TrackChanges` each writes only what it changed,
//! so no update is lost, and a logout is never undone.

use actix_web::{cookie::Key, http::Method};
use futures_util::future::join_all;
use integration_tests::{
    RedisServer, Relay,
    session_app::{
        Gate, MiddlewareMode, app, get_entry, log_in, send, session_cookie, tracked_app,
    },
};
use redis::AsyncCommands as _;

const WRITERS: usize = 50;

#[actix_web::test]
async fn concurrent_writers_of_one_session_keep_all_their_entries() {
    let server = RedisServer::start();
    let key = Key::generate();
    let app = app(server.store(), &key).await;
    let cookie = log_in(&app).await;

    let paths: Vec<String> = (0..WRITERS).map(|i| format!("/set/entry{i}/{i}")).collect();
    let writes = paths
        .iter()
        .map(|path| send(&app, Method::POST, path, Some(&cookie)));
    for response in join_all(writes).await {
        assert_eq!(response.status(), 200);
    }

    let mut lost = Vec::new();
    for i in 0..WRITERS {
        if get_entry(&app, &format!("entry{i}"), Some(&cookie)).await != i.to_string() {
            lost.push(i);
        }
    }
    assert_eq!(lost, Vec::<usize>::new(), "lost updates");
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
}

#[actix_web::test]
async fn concurrent_removals_and_sets_all_land() {
    let server = RedisServer::start();
    let key = Key::generate();
    let app = app(server.store(), &key).await;
    let login = send(&app, Method::POST, "/set/a/1", None).await;
    let cookie = session_cookie(&login).expect("a session cookie");
    send(&app, Method::POST, "/set/b/2", Some(&cookie)).await;

    let (_, _) = futures_util::join!(
        send(&app, Method::POST, "/remove/a", Some(&cookie)),
        send(&app, Method::POST, "/set/c/3", Some(&cookie)),
    );
    assert_eq!(get_entry(&app, "a", Some(&cookie)).await, "none");
    assert_eq!(get_entry(&app, "b", Some(&cookie)).await, "2");
    assert_eq!(get_entry(&app, "c", Some(&cookie)).await, "3");
}

#[actix_web::test]
async fn a_logout_among_concurrent_writes_is_never_undone() {
    let server = RedisServer::start();
    let key = Key::generate();
    let gate = Gate::default();
    let app = tracked_app(
        server.store(),
        &key,
        MiddlewareMode::COOKIE_MODES[0].clone(),
        gate.clone(),
    )
    .await;
    let cookie = log_in(&app).await;

    // Every write has loaded the session when the logout lands; then they all write.
    let paths: Vec<String> = (0..20)
        .map(|i| format!("/gated-set/entry{i}/{i}"))
        .collect();
    let writes = paths
        .iter()
        .map(|path| send(&app, Method::POST, path, Some(&cookie)));
    let logout = async {
        gate.wait_for(20).await;
        let logout = send(&app, Method::POST, "/purge", Some(&cookie)).await;
        gate.open();
        logout
    };
    let (writes, logout) = futures_util::join!(join_all(writes), logout);
    assert_eq!(logout.status(), 200);
    assert!(writes.iter().all(|response| response.status() == 200));

    let keys: Vec<String> = server
        .connection()
        .await
        .keys("session:*")
        .await
        .expect("KEYS");
    assert!(keys.is_empty(), "the logout was undone: {keys:?}");
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "none");
}

/// The session keys in Redis.
async fn sessions(server: &RedisServer) -> Vec<String> {
    server
        .connection()
        .await
        .keys("session:*")
        .await
        .expect("KEYS")
}

#[actix_web::test]
async fn two_overlapping_renewals_leave_one_session() {
    let server = RedisServer::start();
    let key = Key::generate();
    let gate = Gate::default();
    let app = tracked_app(
        server.store(),
        &key,
        MiddlewareMode::COOKIE_MODES[0].clone(),
        gate.clone(),
    )
    .await;
    let cookie = log_in(&app).await;

    let renewals =
        join_all((0..2).map(|_| send(&app, Method::POST, "/gated-renew", Some(&cookie))));
    let open = async {
        gate.wait_for(2).await;
        gate.open();
    };
    let (renewals, ()) = futures_util::join!(renewals, open);
    let mut users = Vec::new();
    for renewal in &renewals {
        assert_eq!(renewal.status(), 200);
        let renewed = session_cookie(renewal).expect("a cookie");
        users.push(get_entry(&app, "user", Some(&renewed)).await);
    }
    users.sort();
    assert_eq!(
        users,
        ["alice", "none"],
        "exactly one renewal holds the session"
    );
    assert_eq!(
        sessions(&server).await.len(),
        1,
        "one session never becomes two"
    );
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "none");
}

#[actix_web::test]
async fn a_renewal_racing_a_logout_does_not_undo_it() {
    let server = RedisServer::start();
    let key = Key::generate();
    let gate = Gate::default();
    let app = tracked_app(
        server.store(),
        &key,
        MiddlewareMode::COOKIE_MODES[0].clone(),
        gate.clone(),
    )
    .await;
    let cookie = log_in(&app).await;

    let renewal = send(&app, Method::POST, "/gated-renew", Some(&cookie));
    let logout = async {
        gate.wait_for(1).await;
        let logout = send(&app, Method::POST, "/purge", Some(&cookie)).await;
        gate.open();
        logout
    };
    let (renewal, logout) = futures_util::join!(renewal, logout);
    assert_eq!(logout.status(), 200);
    assert_eq!(renewal.status(), 200);
    let renewed = session_cookie(&renewal).expect("a cookie");
    assert_eq!(get_entry(&app, "user", Some(&renewed)).await, "none");
    assert!(sessions(&server).await.is_empty(), "the logout was undone");
}

#[actix_web::test]
async fn a_write_racing_a_renewal_is_dropped_and_the_renewed_session_lives() {
    let server = RedisServer::start();
    let key = Key::generate();
    let gate = Gate::default();
    let app = tracked_app(
        server.store(),
        &key,
        MiddlewareMode::COOKIE_MODES[0].clone(),
        gate.clone(),
    )
    .await;
    let cookie = log_in(&app).await;

    let write = send(&app, Method::POST, "/gated-set/theme/dark", Some(&cookie));
    let renewal = async {
        gate.wait_for(1).await;
        let renewal = send(&app, Method::POST, "/renew", Some(&cookie)).await;
        gate.open();
        renewal
    };
    let (write, renewal) = futures_util::join!(write, renewal);
    assert_eq!(write.status(), 200);
    let renewed = session_cookie(&renewal).expect("a renewed cookie");
    assert_eq!(get_entry(&app, "user", Some(&renewed)).await, "alice");
    assert_eq!(
        get_entry(&app, "theme", Some(&renewed)).await,
        "none",
        "the write that loaded the old id is dropped, as docs/design.md says"
    );
    assert_eq!(
        sessions(&server).await.len(),
        1,
        "no leftover of the old id"
    );
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "none");
}

#[actix_web::test]
async fn a_tracked_write_that_finds_its_session_past_the_lifetime_revives_nothing() {
    let server = RedisServer::start();
    let key = Key::generate();
    let gate = Gate::default();
    let store = server.store_with(
        session_store::RedisSessionStore::builder()
            .absolute_timeout(std::time::Duration::from_secs(3600)),
    );
    let app = tracked_app(
        store,
        &key,
        MiddlewareMode::COOKIE_MODES[0].clone(),
        gate.clone(),
    )
    .await;
    let cookie = log_in(&app).await;
    let session = sessions(&server).await.remove(0);

    let write = send(&app, Method::POST, "/gated-set/theme/dark", Some(&cookie));
    let age = async {
        gate.wait_for(1).await;
        // The lifetime ends while the request runs: created 61 minutes ago.
        let mut redis = server.connection().await;
        let created: u64 = redis.hget(&session, "\0c").await.expect("HGET");
        let () = redis
            .hset(&session, "\0c", created - 61 * 60_000)
            .await
            .expect("HSET");
        gate.open();
    };
    let (write, ()) = futures_util::join!(write, age);
    assert_eq!(write.status(), 200);
    assert!(
        sessions(&server).await.is_empty(),
        "the write revived the session"
    );
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "none");
}

#[actix_web::test]
async fn a_logout_between_a_writes_check_and_its_write_leaves_nothing_usable() {
    let server = RedisServer::start();
    let relay = Relay::start(([127, 0, 0, 1], server.port()).into()).await;
    let key = Key::generate();
    let store = session_store::RedisSessionStore::builder()
        .build_with_url(&relay.url())
        .expect("a valid URL");
    let app = tracked_app(
        store,
        &key,
        MiddlewareMode::COOKIE_MODES[0].clone(),
        Gate::default(),
    )
    .await;
    let cookie = log_in(&app).await;
    let session = sessions(&server).await.remove(0);

    // The write's pipeline is HGET (is the session alive?), HSET, PEXPIRE: the relay lets the
    // HGET through and holds the rest while a logout lands.
    let hold = relay.hold_at("HSET");
    let write = send(&app, Method::POST, "/set/theme/dark", Some(&cookie));
    let logout = async {
        hold.reached().await;
        let removed: u64 = server.connection().await.del(&session).await.expect("DEL");
        assert_eq!(removed, 1);
        hold.release();
    };
    let (write, ()) = futures_util::join!(write, logout);
    assert_eq!(write.status(), 200, "the write saw a live session");
    let leftover: std::collections::HashMap<String, String> = server
        .connection()
        .await
        .hgetall(&session)
        .await
        .expect("HGETALL");
    assert_eq!(
        leftover,
        std::collections::HashMap::from([("theme".to_owned(), "\"dark\"".to_owned())]),
        "what the write left: entries without a creation time"
    );

    assert_eq!(
        get_entry(&app, "theme", Some(&cookie)).await,
        "none",
        "never a session"
    );
    assert!(
        sessions(&server).await.is_empty(),
        "the next load removed the leftover"
    );
}

#[actix_web::test]
async fn two_writers_each_under_the_size_limit_can_go_over_it_together() {
    let server = RedisServer::start();
    let key = Key::generate();
    let gate = Gate::default();
    let store = server.store_with(session_store::RedisSessionStore::builder().max_state_size(100));
    let app = tracked_app(
        store,
        &key,
        MiddlewareMode::COOKIE_MODES[0].clone(),
        gate.clone(),
    )
    .await;
    // user=alice: 4 + 7 bytes as stored (JSON).
    let cookie = log_in(&app).await;
    let fifty = "x".repeat(50);

    // Each sees 11 + 1 + 52 = 64 bytes; together they store 117.
    let writes = join_all(["a", "b"].map(|name| {
        let path = format!("/gated-set/{name}/{fifty}");
        let app = &app;
        let cookie = &cookie;
        async move { send(app, Method::POST, &path, Some(cookie)).await }
    }));
    let open = async {
        gate.wait_for(2).await;
        gate.open();
    };
    let (writes, ()) = futures_util::join!(writes, open);
    assert!(writes.iter().all(|write| write.status() == 200));
    assert_eq!(get_entry(&app, "a", Some(&cookie)).await, fifty);
    assert_eq!(get_entry(&app, "b", Some(&cookie)).await, fifty);

    // As docs/design.md says: the next write that leaves the state over the limit is refused,
    // one that brings it back under goes through.
    let grow = send(&app, Method::POST, "/set/c/1", Some(&cookie)).await;
    assert_eq!(grow.status(), 413);
    let shrink = send(&app, Method::POST, "/remove/b", Some(&cookie)).await;
    assert_eq!(shrink.status(), 200);
    assert_eq!(get_entry(&app, "b", Some(&cookie)).await, "none");
}

//! Overlapping requests of one session: with `TrackChanges` each writes only what it changed,
//! so no update is lost, and a logout is never undone. The races run with the near cache on
//! too (the session's copy made before the race): copies change nothing of what a race leaves.

use actix_web::{
    cookie::{Cookie, Key},
    http::Method,
};
use std::time::Duration;

use futures_util::future::join_all;
use integration_tests::{
    RedisServer, Relay,
    session_app::{
        Gate, TestApp, app, gated_app, get_entry, log_in, race, send, session_cookie, start_session,
    },
};
use redis::AsyncCommands as _;
use session_store::{RedisSessionStore, RedisSessionStoreBuilder};

const WRITERS: usize = 50;

/// A server, the usual app on a store built by `builder` on it with a gate of its own, and a
/// session started through the app; with the near cache (`cached`), read until the
/// instance holds a copy of it.
async fn logged_in(
    builder: RedisSessionStoreBuilder,
    cached: bool,
) -> (RedisServer, Gate, impl TestApp + use<>, Cookie<'static>) {
    let server = RedisServer::start();
    let gate = Gate::default();
    let builder = if cached {
        builder.near_cache(100)
    } else {
        builder
    };
    let app = gated_app(server.store_with(builder), &Key::generate(), &gate).await;
    let cookie = log_in(&app).await;
    if cached {
        // The invalidation link comes up within a few heartbeats; then a read makes the copy.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
    }
    (server, gate, app, cookie)
}

#[actix_web::test]
async fn concurrent_writers_of_one_session_keep_all_their_entries() {
    for cached in [false, true] {
        let (_server, _, app, cookie) = logged_in(RedisSessionStore::builder(), cached).await;

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
}

#[actix_web::test]
async fn concurrent_removals_and_sets_all_land() {
    let server = RedisServer::start();
    let app = app(server.store(), &Key::generate()).await;
    let cookie = start_session(&app, "/set/a/1").await;
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
    for cached in [false, true] {
        let (server, gate, app, cookie) = logged_in(RedisSessionStore::builder(), cached).await;

        // Every write has loaded the session when the logout lands; then they all write.
        let paths: Vec<String> = (0..20)
            .map(|i| format!("/gated-set/entry{i}/{i}"))
            .collect();
        let writes = paths
            .iter()
            .map(|path| send(&app, Method::POST, path, Some(&cookie)));
        let logout = gate.once_waiting(20, send(&app, Method::POST, "/purge", Some(&cookie)));
        let (writes, logout) = futures_util::join!(join_all(writes), logout);
        assert_eq!(logout.status(), 200);
        assert!(writes.iter().all(|response| response.status() == 200));

        let keys = sessions(&server).await;
        assert!(keys.is_empty(), "the logout was undone: {keys:?}");
        assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "none");
    }
}

/// The session keys in Redis.
async fn sessions(server: &RedisServer) -> Vec<String> {
    server.keys("session:*").await
}

/// Asserts what a renewal leaves however it raced: one session in Redis (`why` if not), and
/// none for `before`, the cookie from before it.
async fn assert_renewed_once(
    server: &RedisServer,
    app: &impl TestApp,
    before: &Cookie<'static>,
    why: &str,
) {
    assert_eq!(sessions(server).await.len(), 1, "{why}");
    assert_eq!(get_entry(app, "user", Some(before)).await, "none");
}

#[actix_web::test]
async fn two_overlapping_renewals_leave_one_session() {
    for cached in [false, true] {
        let (server, gate, app, cookie) = logged_in(RedisSessionStore::builder(), cached).await;

        let renewals =
            join_all((0..2).map(|_| send(&app, Method::POST, "/gated-renew", Some(&cookie))));
        let (renewals, ()) = futures_util::join!(renewals, gate.once_waiting(2, async {}));
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
        assert_renewed_once(&server, &app, &cookie, "one session never becomes two").await;
    }
}

#[actix_web::test]
async fn a_renewal_racing_a_logout_does_not_undo_it() {
    for cached in [false, true] {
        let (server, gate, app, cookie) = logged_in(RedisSessionStore::builder(), cached).await;

        let (renewal, logout) = race(&app, &gate, &cookie, "/gated-renew", "/purge").await;
        assert_eq!(logout.status(), 200);
        assert_eq!(renewal.status(), 200);
        let renewed = session_cookie(&renewal).expect("a cookie");
        assert_eq!(get_entry(&app, "user", Some(&renewed)).await, "none");
        assert!(sessions(&server).await.is_empty(), "the logout was undone");
    }
}

#[actix_web::test]
async fn a_write_racing_a_renewal_is_dropped_and_the_renewed_session_lives() {
    for cached in [false, true] {
        let (server, gate, app, cookie) = logged_in(RedisSessionStore::builder(), cached).await;

        let (write, renewal) = race(&app, &gate, &cookie, "/gated-set/theme/dark", "/renew").await;
        assert_eq!(write.status(), 200);
        let renewed = session_cookie(&renewal).expect("a renewed cookie");
        assert_eq!(get_entry(&app, "user", Some(&renewed)).await, "alice");
        assert_eq!(
            get_entry(&app, "theme", Some(&renewed)).await,
            "none",
            "the write that loaded the old id is dropped, as docs/design.md says"
        );
        assert_renewed_once(&server, &app, &cookie, "no leftover of the old id").await;
    }
}

#[actix_web::test]
async fn a_tracked_write_that_finds_its_session_past_the_lifetime_revives_nothing() {
    for cached in [false, true] {
        let lifetime = Duration::from_secs(3600);
        let builder = RedisSessionStore::builder().absolute_timeout(lifetime);
        let (server, gate, app, cookie) = logged_in(builder, cached).await;
        let session = sessions(&server).await.remove(0);

        let write = send(&app, Method::POST, "/gated-set/theme/dark", Some(&cookie));
        let age = gate.once_waiting(1, async {
            // The lifetime ends while the request runs: created 61 minutes ago.
            let mut redis = server.connection().await;
            let created: u64 = redis.hget(&session, "\0c").await.expect("HGET");
            let () = redis
                .hset(&session, "\0c", created - 61 * 60_000)
                .await
                .expect("HSET");
        });
        let (write, ()) = futures_util::join!(write, age);
        assert_eq!(write.status(), 200);
        assert!(
            sessions(&server).await.is_empty(),
            "the write revived the session"
        );
        assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "none");
    }
}

#[actix_web::test]
async fn a_logout_between_a_writes_check_and_its_write_leaves_nothing_usable() {
    let server = RedisServer::start();
    let relay = Relay::start(([127, 0, 0, 1], server.port()).into()).await;
    let store = RedisSessionStore::builder()
        .build_with_url(&relay.url())
        .expect("a valid URL");
    let app = app(store, &Key::generate()).await;
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
    let leftover: std::collections::HashMap<String, Vec<u8>> = server
        .connection()
        .await
        .hgetall(&session)
        .await
        .expect("HGETALL");
    assert_eq!(
        leftover.keys().collect::<Vec<_>>(),
        ["theme"],
        "what the write left: entries without a creation time"
    );
    let ttl: i64 = server
        .connection()
        .await
        .pttl(&session)
        .await
        .expect("PTTL");
    assert!(
        ttl > 0,
        "the leftover expires even if no load ever meets it: PTTL {ttl}"
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
    for cached in [false, true] {
        // user=alice: 4 + 7 bytes of JSON and 30 of sealing, as stored.
        let (_server, gate, app, cookie) =
            logged_in(RedisSessionStore::builder().max_state_size(160), cached).await;
        let fifty = "x".repeat(50);

        // Each sees 41 + (1 + 52 + 30) = 124 bytes; together they store 207.
        let writes = join_all(["a", "b"].map(|name| {
            let path = format!("/gated-set/{name}/{fifty}");
            let app = &app;
            let cookie = &cookie;
            async move { send(app, Method::POST, &path, Some(cookie)).await }
        }));
        let (writes, ()) = futures_util::join!(writes, gate.once_waiting(2, async {}));
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
}

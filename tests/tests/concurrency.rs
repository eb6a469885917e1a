//! Overlapping requests of one session: with `TrackChanges` each writes only what it changed,
//! so no update is lost, and a logout is never undone.

use actix_web::{cookie::Key, http::Method};
use futures_util::future::join_all;
use integration_tests::{
    RedisServer,
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
        "the write that loaded the old id is dropped, as the README says"
    );
    assert_eq!(
        sessions(&server).await.len(),
        1,
        "no leftover of the old id"
    );
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "none");
}

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

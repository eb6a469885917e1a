//! The store's pool: connections that fail are replaced, with no restart.

use std::collections::HashMap;

use actix_session::storage::SessionStore as _;
use actix_web::cookie::time::Duration as CookieDuration;
use integration_tests::RedisServer;
use session_store::RedisSessionStore;

#[tokio::test]
async fn killed_connections_are_replaced() {
    let server = RedisServer::start();
    let store = RedisSessionStore::from_url(&server.url()).expect("a valid URL");
    let state = HashMap::from([("user".to_owned(), "\"alice\"".to_owned())]);
    let id = store
        .save(state.clone(), &CookieDuration::days(1))
        .await
        .expect("save");
    assert!(store.load(&id).await.expect("load").is_some());

    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"][..])
        .query_async(&mut server.connection().await)
        .await
        .expect("CLIENT KILL");
    assert!(killed >= 1, "the store's connection was not there to kill");

    // The first use of a dead connection may fail; it must be the only failure.
    let first = store.load(&id).await;
    let second = store
        .load(&id)
        .await
        .expect("the pool replaced the dead connection");
    assert_eq!(second, Some(state));
    if let Err(err) = first {
        println!("first load after the kill failed as allowed: {err}");
    }
}

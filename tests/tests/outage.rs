//! Redis unavailable: requests that need it get a fast `503` with `Retry-After`, requests that
//! do not are served, and when Redis is back the next request works, with no restart.

use std::time::{Duration, Instant};

use actix_web::{cookie::Key, http::Method};
use integration_tests::{
    RedisServer,
    session_app::{
        Gate, MiddlewareMode, app, assert_unavailable, assert_unavailable_within, bare_app,
        get_entry, log_in, logged_in_app, send, session_cookie,
    },
};
use session_store::{RedisSessionStore, RedisSessionStoreBuilder, StoreError, WhenUnavailable};

/// A builder whose every timeout is 300 ms: a budget of 1.2 s.
fn short_timeouts() -> RedisSessionStoreBuilder {
    let short = Duration::from_millis(300);
    RedisSessionStore::builder()
        .wait_timeout(short)
        .create_timeout(short)
        .recycle_timeout(short)
        .command_timeout(short)
}

#[actix_web::test]
async fn a_stopped_redis_means_fast_503s_then_recovery() {
    let mut server = RedisServer::start();
    let (app, cookie) = logged_in_app(server.store()).await;

    server.stop();
    for (method, path, cookie) in [
        (Method::GET, "/get/user", Some(&cookie)),
        (Method::POST, "/set/user/bob", Some(&cookie)),
        (Method::POST, "/set/user/carol", None),
    ] {
        let limit = Duration::from_secs(3);
        let response = assert_unavailable_within(&app, (method.clone(), path), cookie, limit).await;
        // Nothing of the error (an address, a cause) reaches the client.
        let body = actix_web::test::read_body(response).await;
        assert!(body.is_empty(), "{method} {path}: a body {body:?}");
    }
    assert_eq!(
        get_entry(&app, "user", None).await,
        "none",
        "a request that needs no session is served without Redis"
    );

    server.restart().expect("Redis restarts");
    // This Redis keeps nothing on disk, so the old session is gone; the store works again.
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "none");
    let login = send(&app, Method::POST, "/set/user/alice", None).await;
    assert_eq!(login.status(), 200);
    let cookie = session_cookie(&login).expect("a session cookie");
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
}

#[actix_web::test]
async fn a_redis_that_does_not_answer_means_503_at_the_command_timeout() {
    use actix_session::storage::{SessionKey, SessionStore as _};
    use integration_tests::store_errors::assert_command_timeout;

    let server = RedisServer::start();
    let key = Key::generate();
    let timeout = Duration::from_millis(300);
    // Connections stay trusted, so the command is the only step that can wait.
    let store = server.store_with(
        RedisSessionStore::builder()
            .command_timeout(timeout)
            .trust_window(Duration::from_secs(3600)),
    );
    let app = app(store.clone(), &key).await;
    let cookie = log_in(&app).await;

    let pause = Duration::from_millis(4000);
    server.pause(pause).await;
    let started = Instant::now();
    let response = send(&app, Method::GET, "/get/user", Some(&cookie)).await;
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        started.elapsed()
    );
    let never_issued = SessionKey::try_from("A".repeat(43)).expect("a session key");
    let err = store
        .load(&never_issued)
        .await
        .expect_err("Redis is paused");
    assert_command_timeout(err, timeout, "the command timeout fired, not another");

    tokio::time::sleep((pause + Duration::from_millis(200)).saturating_sub(started.elapsed()))
        .await;
    assert_eq!(
        get_entry(&app, "user", Some(&cookie)).await,
        "alice",
        "no recovery"
    );
}

#[actix_web::test]
async fn a_wrong_password_is_a_500_not_a_503() {
    let server = RedisServer::start();
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", "the-right-one"][..])
        .query_async(&mut server.connection().await)
        .await
        .expect("CONFIG SET requirepass");
    let key = Key::generate();
    let url = format!("redis://:the-wrong-one@127.0.0.1:{}", server.port());
    let store = RedisSessionStore::from_url(&url).expect("a valid URL");
    let app = app(store, &key).await;
    let response = send(&app, Method::POST, "/set/user/alice", None).await;
    assert_eq!(
        response.status(),
        500,
        "a misconfiguration is no outage to retry"
    );
    assert!(response.headers().get("retry-after").is_none());
}

#[actix_web::test]
async fn anonymous_fallback_serves_reads_without_the_session_and_keeps_the_cookie() {
    // Stopped, not paused: every request of the outage fails at once, however slowly the test
    // runs; the AOF brings the session back with the server.
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let builder = short_timeouts().when_unavailable(WhenUnavailable::Anonymous);
    let (app, cookie) = logged_in_app(server.store_with(builder)).await;

    server.stop();
    let started = Instant::now();
    let read = send(&app, Method::GET, "/get/user", Some(&cookie)).await;
    assert_eq!(read.status(), 200, "a read goes on, anonymous");
    // A stopped Redis refuses at once: well within the budget of 1.2 s, however busy the
    // machine.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        read.headers().get("set-cookie").is_none(),
        "the cookie is left alone"
    );
    assert_eq!(actix_web::test::read_body(read).await, "none");
    // A page that writes to the session when shown must not replace the visitor's cookie
    // with a new session, even should Redis answer by the time it writes.
    let writing_read = send(&app, Method::GET, "/set/cart/1", Some(&cookie)).await;
    assert_eq!(writing_read.status(), 503);
    assert!(writing_read.headers().get("set-cookie").is_none());
    // A logout cannot go on anonymous: actix-session would drop it, and the session would be
    // back with Redis.
    let logout = send(&app, Method::POST, "/purge", Some(&cookie)).await;
    assert_eq!(
        logout.status(),
        503,
        "a logout that did not happen must say so"
    );
    let write = send(&app, Method::POST, "/set/user/bob", Some(&cookie)).await;
    assert_eq!(write.status(), 503, "a write still needs Redis");

    server.restart().expect("Redis restarts");
    assert_eq!(
        get_entry(&app, "user", Some(&cookie)).await,
        "alice",
        "logged in again once Redis answers"
    );
    assert_eq!(get_entry(&app, "cart", Some(&cookie)).await, "none");
}

#[actix_web::test]
async fn anonymous_fallback_needs_track_changes() {
    let mut server = RedisServer::start();
    let key = Key::generate();
    let builder = RedisSessionStore::builder().when_unavailable(WhenUnavailable::Anonymous);
    let app = bare_app(
        server.store_with(builder),
        &key,
        MiddlewareMode::COOKIE_MODES[0].clone(),
        Gate::default(),
    )
    .await;
    let cookie = log_in(&app).await;
    server.stop();
    let read = send(&app, Method::GET, "/get/user", Some(&cookie)).await;
    assert_eq!(
        read.status(),
        500,
        "without the wrapper the store cannot tell a read from a logout"
    );
}

#[actix_web::test]
async fn a_paused_redis_under_load_fails_every_request_at_the_deadline_with_bounded_connections() {
    /// Long past the budget and its slack, so that an answer from Redis cannot pass for one
    /// at the deadline.
    const PAUSE: Duration = Duration::from_millis(6000);
    let server = RedisServer::start();
    let builder = short_timeouts();
    let store = server.store_with(builder);
    let pool = store.pool().clone();
    let (app, cookie) = logged_in_app(store).await;

    server.pause(PAUSE).await;
    let started = Instant::now();
    let timed = |path: &'static str| {
        let (app, cookie) = (&app, &cookie);
        async move {
            let sent = Instant::now();
            let response = send(app, Method::GET, path, Some(cookie)).await;
            (response.status(), sent.elapsed())
        }
    };
    let answers = futures_util::future::join_all((0..300).map(|_| timed("/get/user"))).await;
    let slowest = answers
        .iter()
        .map(|(_, took)| *took)
        .max()
        .expect("answers");
    assert!(
        answers.iter().all(|(status, _)| *status == 503),
        "{answers:?}"
    );
    // Within the budget (wait + create + recycle + command: 1.2 s) and slack for a busy
    // machine, and well before the pause ends: no request waited for Redis to answer.
    assert!(slowest < Duration::from_millis(3000), "slowest {slowest:?}");
    assert!(
        started.elapsed() < PAUSE - Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    tokio::time::sleep((PAUSE + Duration::from_millis(200)).saturating_sub(started.elapsed()))
        .await;
    // Connections given up on are closed, not leaked: Redis sees at most a pool's worth (and
    // the test's own).
    let info: redis::InfoDict = redis::cmd("INFO")
        .arg("clients")
        .query_async(&mut server.connection().await)
        .await
        .expect("INFO clients");
    let connected: usize = info.get("connected_clients").expect("connected_clients");
    assert!(
        connected <= pool.status().max_size + 1,
        "{connected} connections for a pool of {}",
        pool.status().max_size
    );
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
}

#[actix_web::test]
async fn no_operation_outlasts_its_deadline() {
    let server = RedisServer::start();
    let step = Duration::from_millis(200);
    let wait = Duration::from_millis(50);
    let store = server.store_with(
        RedisSessionStore::builder()
            .wait_timeout(wait)
            .create_timeout(step)
            .recycle_timeout(step)
            .command_timeout(step)
            .trust_window(Duration::ZERO),
    );
    let budget = wait + step * 3;
    // A full pool of idle connections, each to be checked before reuse (no trust window):
    // against a Redis that does not answer, each check takes the recycle timeout, and
    // all of them more than the whole budget.
    let size = store.pool().status().max_size;
    assert!(step * u32::try_from(size).expect("a small pool") > budget);
    let held = futures_util::future::join_all((0..size).map(|_| store.pool().get())).await;
    assert!(held.iter().all(Result::is_ok), "{held:?}");
    drop(held);

    server.pause(Duration::from_millis(2500)).await;
    let started = Instant::now();
    let err = store.health_check().await.expect_err("Redis is paused");
    let took = started.elapsed();
    assert!(
        matches!(err, StoreError::Deadline(limit) if limit == budget),
        "{err:?}"
    );
    assert!(err.is_unavailable());
    assert!(took < budget + Duration::from_millis(500), "took {took:?}");

    tokio::time::sleep(Duration::from_millis(2600).saturating_sub(started.elapsed())).await;
    store.health_check().await.expect("Redis answers again");
}

#[actix_web::test]
async fn a_full_redis_answers_503_to_writes_and_goes_on_reading() {
    let server = RedisServer::start();
    let (app, cookie) = logged_in_app(server.store()).await;
    let set_maxmemory = |bytes: &'static str| async {
        let () = redis::cmd("CONFIG")
            .arg(&["SET", "maxmemory-policy", "noeviction", "maxmemory", bytes][..])
            .query_async(&mut server.connection().await)
            .await
            .expect("CONFIG SET");
    };

    set_maxmemory("1").await;
    for (path, cookie) in [("/set/user/bob", None), ("/set/theme/dark", Some(&cookie))] {
        assert_unavailable_within(&app, (Method::POST, path), cookie, Duration::from_secs(1)).await;
    }
    let err = server
        .store()
        .health_check()
        .await
        .map(|()| "PING is no write");
    assert_eq!(err.ok(), Some("PING is no write"));
    assert_eq!(
        get_entry(&app, "user", Some(&cookie)).await,
        "alice",
        "reads go on"
    );

    set_maxmemory("0").await;
    let response = send(&app, Method::POST, "/set/theme/dark", Some(&cookie)).await;
    assert_eq!(
        response.status(),
        200,
        "writes work again once memory is free"
    );
}

#[tokio::test]
async fn a_full_redis_is_a_clear_error() {
    use actix_session::storage::SessionStore as _;

    let server = RedisServer::start_with(&["--maxmemory", "1", "--maxmemory-policy", "noeviction"]);
    let store = server.store();
    let err = store
        .save(
            std::collections::HashMap::from([("k".to_owned(), "1".to_owned())]),
            &actix_web::cookie::time::Duration::days(1),
        )
        .await
        .expect_err("no memory for a new session");
    let cause = std::error::Error::source(&err)
        .and_then(|source| source.downcast_ref::<StoreError>())
        .expect("a StoreError behind actix-session's error");
    assert!(cause.is_unavailable(), "{cause:?}");
    let chain = format!("{:?}", anyhow_chain(&err));
    assert!(chain.contains("OOM"), "{chain}");
}

/// Every message in an error's chain of causes.
fn anyhow_chain(err: &dyn std::error::Error) -> Vec<String> {
    let mut chain = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push(cause.to_string());
        source = cause.source();
    }
    chain
}

/// What `INFO` says of `server` under `field`.
async fn info<T: redis::FromRedisValue>(server: &RedisServer, field: &str) -> T {
    let info: redis::InfoDict = redis::cmd("INFO")
        .query_async(&mut server.connection().await)
        .await
        .expect("INFO");
    info.get(field)
        .unwrap_or_else(|| panic!("INFO has no {field}"))
}

/// Returns once `INFO` says `loading:{wanted}` of `server`, asking every `poll`.
async fn loading_is(server: &RedisServer, wanted: u8, poll: Duration) {
    while info::<u8>(server, "loading").await != wanted {
        tokio::time::sleep(poll).await;
    }
}

#[actix_web::test]
async fn a_loading_or_read_only_redis_answers_503_and_read_only_connections_are_not_reused() {
    let primary = RedisServer::start_with(&[
        "--enable-debug-command",
        "local",
        "--repl-diskless-sync-delay",
        "0",
    ]);
    // Loading 2,000 keys at 1 ms each, answering clients in between: about two seconds in
    // which this server answers LOADING.
    let replica = RedisServer::start_with(&[
        "--key-load-delay",
        "1000",
        "--loading-process-events-interval-bytes",
        "1024",
    ]);
    let key = Key::generate();
    let app = app(replica.store(), &key).await;
    let cookie = log_in(&app).await;
    let () = redis::cmd("DEBUG")
        .arg(&["POPULATE", "2000"][..])
        .query_async(&mut primary.connection().await)
        .await
        .expect("DEBUG POPULATE");

    let () = redis::cmd("REPLICAOF")
        .arg(&["127.0.0.1", &primary.port().to_string()][..])
        .query_async(&mut replica.connection().await)
        .await
        .expect("REPLICAOF");
    let started_loading = loading_is(&replica, 1, Duration::from_millis(10));
    tokio::time::timeout(Duration::from_secs(10), started_loading)
        .await
        .expect("the replica starts loading");
    let response = send(&app, Method::GET, "/get/user", Some(&cookie)).await;
    assert_unavailable(&response, "while Redis loads");
    assert_eq!(
        info::<u8>(&replica, "loading").await,
        1,
        "it answered LOADING"
    );

    let loaded = loading_is(&replica, 0, Duration::from_millis(50));
    tokio::time::timeout(Duration::from_secs(20), loaded)
        .await
        .expect("the replica finishes loading");
    // A replica: reads slide the expiry, writes write; both are refused with READONLY.
    let connections_before: u64 = info(&replica, "total_connections_received").await;
    for (method, path) in [
        (Method::GET, "/get/user"),
        (Method::POST, "/set/user/bob"),
        (Method::GET, "/get/user"),
    ] {
        let response = send(&app, method.clone(), path, Some(&cookie)).await;
        assert_eq!(response.status(), 503, "{method} {path} on a replica");
    }
    let connections: u64 = info(&replica, "total_connections_received").await;
    assert_eq!(
        connections - connections_before,
        2 + 1,
        "a new connection for each request after the first READONLY (and the test's own)"
    );

    // Promoted, as after a failover: the next request works, on a new connection.
    let () = redis::cmd("REPLICAOF")
        .arg(&["NO", "ONE"][..])
        .query_async(&mut replica.connection().await)
        .await
        .expect("REPLICAOF NO ONE");
    assert_eq!(
        get_entry(&app, "user", Some(&cookie)).await,
        "none",
        "the primary's data"
    );
    let login = send(&app, Method::POST, "/set/user/carol", None).await;
    assert_eq!(login.status(), 200);
}

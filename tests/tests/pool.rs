//! The store's pool: connections that fail are replaced, with no restart; after any failure
//! every other connection proves itself before its reuse; an exhausted pool is an outage.

use std::{collections::HashMap, time::Duration};

use actix_session::storage::{SessionKey, SessionStore as _};
use actix_web::{cookie::time::Duration as CookieDuration, http::Method};
use futures_util::future::join_all;
use integration_tests::{
    Monitor, RedisServer,
    session_app::{app, assert_unavailable, get_entry, log_in, send},
};
use session_store::{Manager, Pool, RedisSessionStore, RedisSessionStoreBuilder, Runtime};

const TTL: CookieDuration = CookieDuration::days(1);

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

/// A store through `server` whose connections stay trusted unless something fails, with
/// `size` connections open and idle in its pool.
async fn store_with_idle_connections(
    server: &RedisServer,
    builder: RedisSessionStoreBuilder,
    size: usize,
) -> RedisSessionStore {
    let store = server.store_with(builder.trust_window(Duration::from_secs(3600)));
    let held = join_all((0..size).map(|_| store.pool().get())).await;
    assert!(held.iter().all(Result::is_ok), "{held:?}");
    drop(held);
    assert_eq!(store.pool().status().size, size);
    store
}

/// The `PING`s among what `monitor` saw: the pool's health checks.
async fn health_checks(monitor: &Monitor) -> usize {
    monitor
        .take()
        .await
        .iter()
        .filter(|command| command.name == "ping")
        .count()
}

/// Asserts that the pool checked `count` connections (`PING`s) since `monitor` last looked.
async fn assert_health_checks(monitor: &Monitor, count: usize, why: &str) {
    assert_eq!(health_checks(monitor).await, count, "{why}");
}

/// A session of one entry saved through `store`: its key.
async fn saved_session(store: &RedisSessionStore) -> SessionKey {
    let state = HashMap::from([("k".to_owned(), "1".to_owned())]);
    store.save(state, &TTL).await.expect("save")
}

/// Loads the session `id` through `store` `times` times, each of which must succeed.
async fn load_times(store: &RedisSessionStore, id: &SessionKey, times: usize) {
    for _ in 0..times {
        store.load(id).await.expect("load");
    }
}

/// A server, a store on it holding `size` idle connections, a session saved through the store
/// and a monitor of what reaches the server after that.
async fn a_session_on_idle_connections(
    size: usize,
) -> (RedisServer, RedisSessionStore, SessionKey, Monitor) {
    let server = RedisServer::start();
    let store = store_with_idle_connections(&server, RedisSessionStore::builder(), size).await;
    let id = saved_session(&store).await;
    let monitor = Monitor::start(&server.client()).await;
    (server, store, id, monitor)
}

#[tokio::test]
async fn a_failed_connection_makes_the_next_one_in_use_prove_itself_once() {
    let (server, store, id, monitor) = a_session_on_idle_connections(3).await;
    load_times(&store, &id, 6).await;
    assert_health_checks(&monitor, 0, "trusted connections are not checked").await;

    kill_the_client_in_use(&server).await;
    // Every read until one meets the dead connection, and some after.
    let mut failures = 0;
    for _ in 0..10 {
        failures += usize::from(store.load(&id).await.is_err());
    }
    assert!(failures <= 1, "{failures} failures");
    assert_health_checks(
        &monitor,
        1,
        "the connection the store goes on with checked once before its reuse (the third \
         stays idle)",
    )
    .await;
    load_times(&store, &id, 6).await;
    assert_health_checks(&monitor, 0, "and trusted again after").await;
}

/// A connection the application takes out of the pool (`Object::take`) is the application's:
/// the store sends nothing more on it, so losing it costs the store no request.
#[tokio::test]
async fn a_connection_taken_out_of_the_pool_carries_none_of_the_stores_requests() {
    let (server, store, id, _monitor) = a_session_on_idle_connections(1).await;
    load_times(&store, &id, 2).await;
    let taken = deadpool::managed::Object::take(store.pool().get().await.expect("a connection"));
    kill_the_client_in_use(&server).await;
    for _ in 0..3 {
        store
            .load(&id)
            .await
            .expect("a load on a connection of the pool");
    }
    drop(taken);
}

#[tokio::test]
async fn a_command_cut_off_without_an_answer_makes_the_pool_check_its_connections() {
    let (server, store, id, monitor) = a_session_on_idle_connections(2).await;

    let pause = Duration::from_millis(1500);
    server.pause(pause).await;
    let started = std::time::Instant::now();
    // The caller gives up mid-command (a client gone, a timeout of its own).
    let cut = tokio::time::timeout(Duration::from_millis(100), store.load(&id)).await;
    assert!(cut.is_err(), "the load was cut off");
    tokio::time::sleep((pause + Duration::from_millis(200)).saturating_sub(started.elapsed()))
        .await;
    monitor.take().await;

    load_times(&store, &id, 4).await;
    assert_health_checks(
        &monitor,
        1,
        "the connection the store goes on with checked once, then trusted",
    )
    .await;
}

#[actix_web::test]
async fn an_exhausted_pool_answers_503_within_the_wait_timeout() {
    let server = RedisServer::start();
    let manager = Manager::new(server.url()).expect("a valid URL");
    let pool = Pool::builder(manager)
        .max_size(2)
        .runtime(Runtime::Tokio1)
        .build()
        .expect("a pool");
    let wait = Duration::from_millis(300);
    let store = RedisSessionStore::builder()
        .wait_timeout(wait)
        .build_with_pool(pool)
        .expect("valid settings");
    let key = actix_web::cookie::Key::generate();
    let app = app(store.clone(), &key).await;
    let cookie = log_in(&app).await;

    let held = join_all((0..2).map(|_| store.pool().get())).await;
    let started = std::time::Instant::now();
    let response = send(&app, Method::GET, "/get/user", Some(&cookie)).await;
    assert_unavailable(&response, "a read");
    assert!(started.elapsed() >= wait, "it waited for a connection");
    assert!(started.elapsed() < wait * 5, "took {:?}", started.elapsed());
    drop(held);
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
}

/// Kills the connection the store sends its requests on (the one whose last command was a
/// read's `PEXPIRE`; the others sit idle in the pool).
async fn kill_the_client_in_use(server: &RedisServer) {
    let mut redis = server.connection().await;
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut redis)
        .await
        .expect("CLIENT LIST");
    let victim = clients
        .lines()
        .filter(|line| line.contains("cmd=pexpire"))
        .filter_map(|line| {
            line.strip_prefix("id=")?
                .split(' ')
                .next()?
                .parse::<i64>()
                .ok()
        })
        .next()
        .expect("the store's connection in use");
    let () = redis::cmd("CLIENT")
        .arg(&["KILL", "ID", &victim.to_string()][..])
        .query_async(&mut redis)
        .await
        .expect("CLIENT KILL");
}

/// A pool's first connection asks for the server's version (on a cluster, every primary's),
/// which the store needs to be 6.2 or newer, and no later connection asks again.
#[tokio::test]
async fn a_pool_checks_the_redis_version_once() {
    use integration_tests::{CapturedLogs, deployment::Deployment};
    use tracing_subscriber::filter::LevelFilter;

    for deployment in [
        Deployment::single(),
        Deployment::cluster(),
        Deployment::sentinel(),
    ] {
        let logs = CapturedLogs::start(LevelFilter::DEBUG);
        let store = deployment.store_with(RedisSessionStore::builder());
        for _ in 0..3 {
            store.health_check().await.expect("PING");
        }
        let text = logs.text();
        let checked: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("Redis version checked"))
            .collect();
        let expected = match deployment.name() {
            "cluster" => deployment.primaries(),
            _ => 1,
        };
        assert_eq!(checked.len(), expected, "{}:\n{text}", deployment.name());
        for line in checked {
            let version = line.split("redis_version=").nth(1).expect("the version");
            assert!(
                version.starts_with(|c: char| c.is_ascii_digit()) && version.contains('.'),
                "{line}"
            );
        }
        assert!(!text.contains("older than"), "{text}");
    }
}

/// A pool of the application's own keeps the trust window its manager was made with: a zero
/// window checks the connection at every checkout, an hour's never while nothing fails; and
/// the builder refuses a trust window of its own for such a pool instead of ignoring it.
#[tokio::test]
async fn a_pool_of_ones_own_keeps_its_managers_trust_window() {
    let server = RedisServer::start();
    for (window, checks) in [(Duration::ZERO, 4), (Duration::from_secs(3600), 0)] {
        let manager = Manager::new(server.url())
            .expect("a valid URL")
            .trust_window(window);
        let pool = Pool::builder(manager)
            .max_size(1)
            .runtime(Runtime::Tokio1)
            .build()
            .expect("a pool");
        let store = RedisSessionStore::builder()
            .build_with_pool(pool)
            .expect("valid settings");
        let id = saved_session(&store).await;
        let monitor = Monitor::start(&server.client()).await;
        load_times(&store, &id, 4).await;
        assert_health_checks(&monitor, checks, &format!("a trust window of {window:?}")).await;
    }

    let pool = Pool::builder(Manager::new(server.url()).expect("a valid URL"))
        .runtime(Runtime::Tokio1)
        .build()
        .expect("a pool");
    let refused = RedisSessionStore::builder()
        .trust_window(Duration::ZERO)
        .build_with_pool(pool);
    assert!(
        matches!(
            refused,
            Err(session_store::StoreError::InvalidSetting {
                setting: "trust_window",
                ..
            })
        ),
        "{refused:?}"
    );
}

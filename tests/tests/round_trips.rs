//! What reaches Redis per request through `SessionMiddleware`, pool checkouts included,
//! watched with `MONITOR` (which, unlike `INFO commandstats`, tells the commands a client sent
//! from those its Lua scripts ran).
//!
//! Some commands always travel together, as one pipeline and one round trip: a load's
//! `HGETALL` and `PEXPIRE`; a write of changed entries' `HGET`, `HSET`/`HDEL` and `PEXPIRE`;
//! the pool's health check, `UNWATCH` and `PING`. [`round_trips`] groups them.

use std::time::Duration;

use actix_session::config::{CookieContentSecurity, TtlExtensionPolicy};
use actix_web::{cookie::Key, http::Method};
use integration_tests::{
    Monitor, RedisServer,
    session_app::{
        Gate, MiddlewareMode, bare_app, forge_cookie, get_entry, log_in, send, tracked_app,
    },
};
use session_store::RedisSessionStore;

/// A store whose connections stay trusted for the whole test, so that no health check of the
/// pool shows up among a request's round trips, however slowly the test runs.
fn trusting_store(server: &RedisServer) -> RedisSessionStore {
    server.store_with(RedisSessionStore::builder().trust_window(Duration::from_secs(3600)))
}

/// The round trips clients made, as the commands each carried joined by `+` (leaving out
/// those Lua scripts ran).
async fn round_trips(monitor: &Monitor) -> Vec<String> {
    let mut trips: Vec<String> = Vec::new();
    for command in monitor
        .take()
        .await
        .into_iter()
        .filter(|command| !command.from_script)
    {
        let pipelined = trips.last().is_some_and(|trip| {
            let mut names = trip.split('+');
            let (first, last) = (names.next().unwrap_or_default(), trip.rsplit('+').next());
            matches!(
                (first, last, command.name.as_str()),
                ("hgetall", Some("hgetall"), "pexpire")
                    | ("unwatch", Some("unwatch"), "ping")
                    | ("hget", Some("hget"), "hset" | "hdel" | "pexpire")
                    | ("hget", Some("hset"), "hdel" | "pexpire")
                    | ("hget", Some("hdel"), "pexpire")
            )
        });
        match trips.last_mut() {
            Some(trip) if pipelined => {
                trip.push('+');
                trip.push_str(&command.name);
            }
            _ => trips.push(command.name),
        }
    }
    trips
}

const POLICIES: [TtlExtensionPolicy; 2] = [
    TtlExtensionPolicy::OnStateChanges,
    TtlExtensionPolicy::OnEveryRequest,
];

fn mode(policy: TtlExtensionPolicy) -> MiddlewareMode {
    MiddlewareMode {
        security: CookieContentSecurity::Private,
        policy,
    }
}

#[actix_web::test]
async fn a_read_only_request_is_one_round_trip() {
    for policy in POLICIES {
        let server = RedisServer::start();
        let key = Key::generate();
        let app = tracked_app(
            trusting_store(&server),
            &key,
            mode(policy.clone()),
            Gate::default(),
        )
        .await;
        let cookie = log_in(&app).await;

        let monitor = Monitor::start(&server.client()).await;
        assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
        assert_eq!(
            round_trips(&monitor).await,
            ["hgetall+pexpire"],
            "{policy:?}"
        );
    }
}

#[actix_web::test]
async fn without_track_changes_every_request_policy_costs_a_second_round_trip() {
    let server = RedisServer::start();
    let key = Key::generate();
    let app = bare_app(
        trusting_store(&server),
        &key,
        mode(TtlExtensionPolicy::OnEveryRequest),
        Gate::default(),
    )
    .await;
    let cookie = log_in(&app).await;

    let monitor = Monitor::start(&server.client()).await;
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
    assert_eq!(
        round_trips(&monitor).await,
        ["hgetall+pexpire", "pexpire"],
        "load, then update_ttl"
    );
}

#[actix_web::test]
async fn a_new_session_is_one_round_trip_and_a_write_two() {
    let server = RedisServer::start();
    let key = Key::generate();
    let app = bare_app(
        trusting_store(&server),
        &key,
        mode(TtlExtensionPolicy::OnStateChanges),
        Gate::default(),
    )
    .await;
    let cookie = log_in(&app).await;
    send(&app, Method::POST, "/set/user/bob", Some(&cookie)).await;

    let monitor = Monitor::start(&server.client()).await;
    send(&app, Method::POST, "/set/user/carol", None).await;
    assert_eq!(round_trips(&monitor).await, ["evalsha"], "new session");
    send(&app, Method::POST, "/set/user/dave", Some(&cookie)).await;
    assert_eq!(
        round_trips(&monitor).await,
        ["hgetall+pexpire", "evalsha"],
        "load, then update"
    );
    send(&app, Method::POST, "/renew", Some(&cookie)).await;
    assert_eq!(
        round_trips(&monitor).await,
        ["hgetall+pexpire", "del", "evalsha"],
        "load, delete, save"
    );
}

#[actix_web::test]
async fn a_tracked_write_is_two_round_trips_of_plain_commands() {
    let server = RedisServer::start();
    let key = Key::generate();
    let app = tracked_app(
        trusting_store(&server),
        &key,
        mode(TtlExtensionPolicy::OnStateChanges),
        Gate::default(),
    )
    .await;
    let cookie = log_in(&app).await;

    let monitor = Monitor::start(&server.client()).await;
    send(&app, Method::POST, "/set/user/bob", Some(&cookie)).await;
    assert_eq!(
        round_trips(&monitor).await,
        ["hgetall+pexpire", "hget+hset+pexpire"],
        "load, then the changed entry"
    );
    send(&app, Method::POST, "/remove/user", Some(&cookie)).await;
    assert_eq!(
        round_trips(&monitor).await,
        ["hgetall+pexpire", "hget+hdel+pexpire"]
    );
    send(&app, Method::POST, "/remove/user", Some(&cookie)).await;
    assert_eq!(
        round_trips(&monitor).await,
        ["hgetall+pexpire"],
        "nothing changed, nothing written"
    );
}

#[actix_web::test]
async fn an_idle_connection_proves_itself_before_reuse() {
    let server = RedisServer::start();
    let key = Key::generate();
    let store = server.store_with(RedisSessionStore::builder().trust_window(Duration::ZERO));
    let app = bare_app(
        store,
        &key,
        mode(TtlExtensionPolicy::OnStateChanges),
        Gate::default(),
    )
    .await;
    let cookie = log_in(&app).await;

    let monitor = Monitor::start(&server.client()).await;
    get_entry(&app, "user", Some(&cookie)).await;
    assert_eq!(
        round_trips(&monitor).await,
        ["unwatch+ping", "hgetall+pexpire"],
        "the pool's check, then the read"
    );
}

#[actix_web::test]
async fn a_malformed_cookie_sends_nothing_at_all() {
    let server = RedisServer::start();
    let key = Key::generate();
    let app = bare_app(
        trusting_store(&server),
        &key,
        mode(TtlExtensionPolicy::OnEveryRequest),
        Gate::default(),
    )
    .await;
    let monitor = Monitor::start(&server.client()).await;
    let forged = forge_cookie(&key, CookieContentSecurity::Private, "{not*an id}");
    assert_eq!(get_entry(&app, "user", Some(&forged)).await, "none");
    assert_eq!(monitor.take().await, vec![], "not even a pool checkout");
}

//! `min_replica_acks`: with too few replicas to acknowledge it, every write (a login, a change,
//! a renewal, a logout) is answered `503` with `Retry-After`, as `docs/topologies.md` says,
//! "though the primary has it"; so a login answered `503` gives no cookie and leaves nobody
//! logged in. On a single server, on a cluster (only the shard whose replica is gone refuses)
//! and behind Sentinel; with the replicas up, the same writes are answered `200`.
//!
//! Replicas are stopped, never primaries, with failure detection slow enough (node timeout,
//! `down-after`) that nothing is failed over meanwhile.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{
    cookie::{Cookie, Key},
    dev::ServiceResponse,
    http::Method,
};
use integration_tests::{
    RedisServer,
    deployment::{Deployment, cluster_failing_over_after, sentinels_failing_over_after},
    session_app::{TestApp, app, get_entry, redis_key, send, session_cookie, session_key_in},
};
use local_redis::RedisCluster;
use session_store::{RedisSessionStore, RedisSessionStoreBuilder};

/// The stores' key prefix.
const PREFIX: &str = "acks:";
/// How long each write waits for its replica: time enough for a replica on a busy machine, so
/// that a write with its replica up is never refused (each refused write takes this long).
const WAIT_FOR: Duration = Duration::from_secs(1);
/// Failure detection far slower than anything a test here waits for: stopping a replica, or a
/// busy machine stalling a process, never fails a primary over.
const SLOW_DETECTION: Duration = Duration::from_secs(30);
/// Sessions each test makes while the replicas are up and writes to after they are gone: one
/// changed, one renewed by a login, one logged out.
const SESSIONS: usize = 3;

/// A builder for the stores under test: every write waits for one replica.
fn durable() -> RedisSessionStoreBuilder {
    RedisSessionStore::builder()
        .key_prefix(PREFIX)
        .command_timeout(WAIT_FOR * 3)
        .min_replica_acks(1, WAIT_FOR)
}

/// The app under test on `deployment` (see [`durable`]), and its cookie key.
async fn durable_app(deployment: &Deployment) -> (Key, impl TestApp + use<>) {
    let key = Key::generate();
    let app = app(deployment.store_with(durable()), &key).await;
    (key, app)
}

/// [`SESSIONS`] sessions started through `app`, their cookies.
async fn sessions_through(app: &impl TestApp) -> Vec<Cookie<'static>> {
    let mut cookies = Vec::new();
    for _ in 0..SESSIONS {
        cookies.push(logged_in(app).await);
    }
    cookies
}

/// `POST /login/{user}`, over the session of `cookie` when there is one: the state cleared,
/// the id renewed, `user` set.
async fn log_in(
    app: &impl TestApp,
    user: &str,
    cookie: Option<&Cookie<'static>>,
) -> ServiceResponse {
    send(app, Method::POST, &format!("/login/{user}"), cookie).await
}

/// A fresh login as `alice`, acknowledged: its cookie.
async fn logged_in(app: &impl TestApp) -> Cookie<'static> {
    let response = log_in(app, "alice", None).await;
    assert_eq!(response.status(), 200, "a login with its replica up");
    session_cookie(&response).expect("a session cookie")
}

/// Asserts that `response` is a `503` with `Retry-After`, that sets no cookie.
fn assert_refused(response: &ServiceResponse, what: &str) {
    assert_eq!(response.status(), 503, "{what}: too few replicas");
    assert!(
        response.headers().contains_key("retry-after"),
        "{what}: a 503 without Retry-After"
    );
    assert!(
        session_cookie(response).is_none(),
        "{what}: a 503 that sets a session cookie"
    );
}

/// Every kind of write answered `200` and read back: a login, a change, a removal, a login over
/// the session (a renewal), a logout.
async fn writes_are_acknowledged(app: &impl TestApp) {
    let cookie = logged_in(app).await;
    assert_eq!(get_entry(app, "user", Some(&cookie)).await, "alice");
    for (path, value) in [("/set/theme/dark", "dark"), ("/remove/theme", "none")] {
        let response = send(app, Method::POST, path, Some(&cookie)).await;
        assert_eq!(response.status(), 200, "{path} with its replica up");
        assert_eq!(get_entry(app, "theme", Some(&cookie)).await, value);
    }
    let renewed = log_in(app, "bob", Some(&cookie)).await;
    assert_eq!(
        renewed.status(),
        200,
        "a login over a session with its replica up"
    );
    let cookie = session_cookie(&renewed).expect("a new session cookie");
    assert_eq!(get_entry(app, "user", Some(&cookie)).await, "bob");
    let purged = send(app, Method::POST, "/purge", Some(&cookie)).await;
    assert_eq!(purged.status(), 200, "a logout with its replica up");
    assert_eq!(get_entry(app, "user", Some(&cookie)).await, "none");
}

/// With too few replicas for the sessions of `cookies` (logged in as `alice`): reads are
/// served, and every write to them is answered `503` with `Retry-After`. As
/// `docs/topologies.md` says, the primary has each write all the same: the change is read back, the logout took effect,
/// and a login over a session deleted the old one (the first half of a renewal) and gave no
/// cookie for the new one, so nobody is logged in as the new user.
async fn writes_are_refused(app: &impl TestApp, cookies: &[Cookie<'static>]) {
    let [changed, renewed, ended] = cookies else {
        panic!("{SESSIONS} sessions");
    };
    assert_eq!(
        get_entry(app, "user", Some(changed)).await,
        "alice",
        "a read waits for no replica"
    );

    let started = Instant::now();
    let set = send(app, Method::POST, "/set/theme/dark", Some(changed)).await;
    assert_refused(&set, "a change");
    assert!(
        started.elapsed() >= WAIT_FOR,
        "a change refused after {:?}, before its WAIT ran out",
        started.elapsed()
    );
    assert_eq!(
        get_entry(app, "theme", Some(changed)).await,
        "dark",
        "a change answered 503: the primary has it (docs/topologies.md)"
    );
    let removed = send(app, Method::POST, "/remove/theme", Some(changed)).await;
    assert_refused(&removed, "a removal");
    assert_eq!(get_entry(app, "theme", Some(changed)).await, "none");

    let login = log_in(app, "bob", Some(renewed)).await;
    assert_refused(&login, "a login over a session");
    assert_eq!(
        get_entry(app, "user", Some(renewed)).await,
        "none",
        "a login answered 503 logs nobody in: the old session is deleted on the primary, \
         the new one's cookie was never given"
    );

    let logout = send(app, Method::POST, "/purge", Some(ended)).await;
    assert_refused(&logout, "a logout");
    assert_eq!(
        get_entry(app, "user", Some(ended)).await,
        "none",
        "a logout answered 503: the primary has it (docs/topologies.md)"
    );
}

/// Fresh logins, with no replica to acknowledge any write: each is answered `503` with
/// `Retry-After` and no cookie, so the visitor is not logged in; the session each made stays on
/// its primary, where no cookie leads (`docs/topologies.md`: "though the primary has it").
async fn fresh_logins_are_refused(app: &impl TestApp, deployment: &Deployment) {
    const LOGINS: usize = 3;
    let before = stored_sessions(deployment).await;
    for _ in 0..LOGINS {
        assert_refused(&log_in(app, "carol", None).await, "a fresh login");
    }
    assert_eq!(
        get_entry(app, "user", None).await,
        "none",
        "the visitor whose login was refused has no session"
    );
    assert_eq!(
        stored_sessions(deployment).await,
        before + LOGINS,
        "each refused login's session stays on its primary (docs/topologies.md), cookieless"
    );
}

/// How many sessions of the stores under test Redis holds.
async fn stored_sessions(deployment: &Deployment) -> usize {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{PREFIX}s:*"))
        .query_async(&mut deployment.connection().await)
        .await
        .expect("KEYS");
    keys.len()
}

/// Waits until the server on `port` has a replica in sync.
async fn wait_for_replica(port: u16) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("a URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("the primary answers");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut connection)
            .await
            .expect("INFO");
        if info.contains("connected_slaves:1") && info.contains("state=online") {
            return;
        }
        assert!(Instant::now() < deadline, "no replica in sync: {info}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn a_primary_whose_replica_stopped_refuses_every_write_until_it_is_back() {
    // The primary syncs a replica at once rather than after waiting 5 s for others.
    let primary = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
    let port = primary.port().to_string();
    let mut replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let primary_port = primary.port();
    wait_for_replica(primary_port).await;
    let deployment = Deployment::Single(primary);
    let (_, app) = durable_app(&deployment).await;

    writes_are_acknowledged(&app).await;
    let cookies = sessions_through(&app).await;

    replica.stop();
    writes_are_refused(&app, &cookies).await;
    fresh_logins_are_refused(&app, &deployment).await;

    replica.restart().expect("the replica restarts");
    wait_for_replica(primary_port).await;
    writes_are_acknowledged(&app).await;
}

#[actix_web::test]
async fn a_primary_without_a_replica_refuses_every_write() {
    let deployment = Deployment::single();
    let (key, app) = durable_app(&deployment).await;
    // Sessions made by a store that waits for no replica, which the store under test reads as
    // its own (same prefix, same cookie key).
    let plain = app_without_wait(&deployment, &key).await;
    let cookies = sessions_through(&plain).await;

    writes_are_refused(&app, &cookies).await;
    fresh_logins_are_refused(&app, &deployment).await;
}

/// A write that waits for its replica holds its connection to itself: a read meanwhile goes
/// on another connection and is not held up behind the `WAIT` (the store sends on the
/// connection it used last only while nobody holds a pooled one).
#[actix_web::test]
async fn a_write_waiting_for_its_replica_holds_up_no_read() {
    let deployment = Deployment::single();
    let (key, app) = durable_app(&deployment).await;
    let plain = app_without_wait(&deployment, &key).await;
    let cookie = logged_in(&plain).await;
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");

    let write = async {
        let response = send(&app, Method::POST, "/set/theme/dark", Some(&cookie)).await;
        assert_refused(&response, "a write with no replica");
    };
    let read = async {
        tokio::time::sleep(WAIT_FOR / 5).await;
        let started = Instant::now();
        assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
        started.elapsed()
    };
    let ((), took) = futures_util::join!(write, read);
    assert!(
        took < WAIT_FOR / 2,
        "the read waited {took:?}, behind the write's WAIT"
    );
}

/// An app on `deployment` whose store waits for no replica, under the same prefix.
async fn app_without_wait(deployment: &Deployment, key: &Key) -> impl TestApp + use<> {
    app(
        deployment.store_with(RedisSessionStore::builder().key_prefix(PREFIX)),
        key,
    )
    .await
}

#[actix_web::test]
async fn a_cluster_shard_whose_replica_stopped_refuses_writes_and_only_that_shard() {
    let cluster = cluster_failing_over_after(SLOW_DETECTION);
    let primaries = cluster.primaries().expect("the slot map");
    let mut deployment = Deployment::Cluster(Arc::new(cluster));
    let (key, app) = durable_app(&deployment).await;

    writes_are_acknowledged(&app).await;
    // Sessions made with every replica up, until one shard holds SESSIONS of them and another
    // shard one.
    let mut by_shard = BTreeMap::<usize, Vec<Cookie<'static>>>::new();
    let enough = |by_shard: &BTreeMap<usize, Vec<Cookie<'static>>>| {
        by_shard.len() > 1 && by_shard.values().any(|cookies| cookies.len() >= SESSIONS)
    };
    while !enough(&by_shard) {
        let cookie = logged_in(&app).await;
        let shard = cluster_of(&deployment)
            .primary_for_key(redis_key(PREFIX, &session_key_in(&cookie, &key)))
            .expect("the slot map");
        by_shard.entry(shard).or_default().push(cookie);
    }
    let (&shard, cookies) = by_shard
        .iter()
        .find(|(_, cookies)| cookies.len() >= SESSIONS)
        .expect("a shard with enough sessions");
    let cookies = cookies[..SESSIONS].to_vec();
    let (_, elsewhere) = by_shard
        .iter()
        .find(|&(&other, _)| other != shard)
        .expect("a session on another shard");
    let elsewhere = elsewhere[0].clone();

    let replicas = cluster_of(&deployment)
        .replicas_of(shard)
        .expect("the slot map");
    assert!(!replicas.is_empty(), "shard {shard} has no replica");
    let cluster = Arc::get_mut(cluster_mut(&mut deployment)).expect("this test's own cluster");
    for &replica in &replicas {
        cluster.stop(replica);
    }
    writes_are_refused(&app, &cookies).await;
    let set = send(&app, Method::POST, "/set/theme/light", Some(&elsewhere)).await;
    assert_eq!(
        set.status(),
        200,
        "a write on a shard whose replica is up, while another shard has none"
    );
    assert_eq!(get_entry(&app, "theme", Some(&elsewhere)).await, "light");

    let cluster = Arc::get_mut(cluster_mut(&mut deployment)).expect("this test's own cluster");
    for &primary in &primaries {
        for replica in cluster.replicas_of(primary).expect("the slot map") {
            cluster.stop(replica);
        }
    }
    fresh_logins_are_refused(&app, &deployment).await;
    let set = send(&app, Method::POST, "/set/theme/dark", Some(&elsewhere)).await;
    assert_refused(&set, "a change, every replica stopped");
    assert_eq!(
        cluster_of(&deployment).primaries().expect("the slot map"),
        primaries,
        "the primaries kept their slots: nothing was failed over"
    );
}

fn cluster_of(deployment: &Deployment) -> &RedisCluster {
    match deployment {
        Deployment::Cluster(cluster) => cluster,
        _ => unreachable!("a cluster"),
    }
}

fn cluster_mut(deployment: &mut Deployment) -> &mut Arc<RedisCluster> {
    match deployment {
        Deployment::Cluster(cluster) => cluster,
        _ => unreachable!("a cluster"),
    }
}

#[actix_web::test]
async fn a_sentinel_primary_whose_replica_stopped_refuses_every_write() {
    let sentinels = sentinels_failing_over_after(SLOW_DETECTION);
    let primary = sentinels.primary().expect("a primary");
    let mut deployment = Deployment::Sentinel(Arc::new(sentinels));
    let (_, app) = durable_app(&deployment).await;

    writes_are_acknowledged(&app).await;
    let cookies = sessions_through(&app).await;

    let Deployment::Sentinel(sentinels) = &mut deployment else {
        unreachable!("a Sentinel setup");
    };
    let sentinels = Arc::get_mut(sentinels).expect("this test's own setup");
    sentinels.stop_server(1 - primary);
    writes_are_refused(&app, &cookies).await;
    fresh_logins_are_refused(&app, &deployment).await;

    let Deployment::Sentinel(sentinels) = &deployment else {
        unreachable!("a Sentinel setup");
    };
    assert_eq!(
        sentinels.primary().expect("a primary"),
        primary,
        "the sentinels kept the primary"
    );
}

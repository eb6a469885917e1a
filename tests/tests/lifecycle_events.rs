//! Lifecycle events over pub/sub, each produced for real: a renewal's `renewed`, Redis's
//! expiry of an idle session as `expired`, a consumer that falls behind told it `lagged`, and a
//! subscriber that goes on after a cluster primary or a Sentinel primary is killed.

use std::time::{Duration, Instant, SystemTime};

use actix_web::{
    cookie::{Cookie, Key},
    http::Method,
};
use futures_util::StreamExt as _;
use integration_tests::{
    RedisServer,
    deployment::{
        Deployment, cluster_failing_over_after, cluster_store, sentinel_store,
        sentinels_failing_over_after, unique_prefix,
    },
    session_app::{TestApp, app, redis_key, send, session_cookie, session_key_in},
};
use local_redis::RedisCluster;
use redis::AsyncCommands as _;
use session_store::{
    RedisSessionStore, RedisSessionStoreBuilder, SessionEvent, SessionEventKind, SessionEvents,
    SessionNotice,
};

/// What a subscriber's consumer may leave unread before events are dropped: the subscriber's
/// backlog (`BACKLOG` in session-store's `features/subscriber.rs`; the public docs give no number).
const BACKLOG: usize = 1024;

/// The tests that kill a node run one at a time: each failover wants the cores to itself.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A store that names `user` and publishes its events under `prefix`.
fn builder(prefix: &str) -> RedisSessionStoreBuilder {
    RedisSessionStore::builder()
        .key_prefix(prefix)
        .user_entry("user")
        .publish_events(true)
        .instance_label("test")
}

async fn log_in(
    app: &impl TestApp,
    user: &str,
    cookie: Option<&Cookie<'static>>,
) -> Cookie<'static> {
    let response = send(app, Method::POST, &format!("/login/{user}"), cookie).await;
    assert_eq!(response.status(), 200, "login of {user}");
    session_cookie(&response).expect("a session cookie")
}

/// The reference (what events name) of the session of `cookie`.
fn reference(prefix: &str, key: &Key, cookie: &Cookie<'static>) -> String {
    let redis_key = redis_key(prefix, &session_key_in(cookie, key));
    let digest = redis_key.rsplit_once("s:").expect("a session key").1;
    digest[..12].to_owned()
}

/// Logs in (as `probe1`, `probe2`...) until an event published after `events` subscribed
/// reaches it: the subscription is live. Gives that event. Fails when none comes in 15 s.
async fn until_live(app: &impl TestApp, events: &mut SessionEvents) -> SessionEvent {
    let deadline = Instant::now() + Duration::from_secs(15);
    for probe in 1.. {
        assert!(
            Instant::now() < deadline,
            "no event of {probe} logins reached the subscriber in 15 s: the subscription is broken"
        );
        log_in(app, &format!("probe{probe}"), None).await;
        if let Ok(notice) = tokio::time::timeout(Duration::from_millis(200), events.next()).await {
            match notice.expect("the stream goes on") {
                SessionNotice::Event(event) => return event,
                other => panic!("{other:?} before any event"),
            }
        }
    }
    unreachable!()
}

/// The next notice, within `within`.
async fn next_notice(events: &mut SessionEvents, within: Duration, what: &str) -> SessionNotice {
    tokio::time::timeout(within, events.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing in {within:?}"))
        .expect("the stream goes on")
}

/// Events until one `wanted` picks, within `within` in all; gives every event on the way.
async fn events_until(
    events: &mut SessionEvents,
    within: Duration,
    mut wanted: impl FnMut(&SessionEvent) -> bool,
) -> Vec<SessionEvent> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let notice = tokio::time::timeout(left, events.next())
            .await
            .unwrap_or_else(|_| panic!("not the event wanted in {within:?}; saw {seen:#?}"))
            .expect("the stream goes on");
        match notice {
            SessionNotice::Event(event) => {
                let found = wanted(&event);
                seen.push(event);
                if found {
                    return seen;
                }
            }
            other => panic!("{other:?} among events; saw {seen:#?}"),
        }
    }
}

/// How many subscribers `server` has on `channel` (on a cluster node: its own).
async fn subscribers(server: &local_redis::RedisServer, channel: &str) -> u64 {
    let mut connection = redis::Client::open(server.url())
        .expect("a loopback URL")
        .get_multiplexed_async_connection()
        .await
        .expect("the server answers");
    let (_, count): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut connection)
        .await
        .expect("PUBSUB NUMSUB");
    count
}

/// Milliseconds since the epoch.
fn epoch_millis(time: SystemTime) -> u128 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis()
}

mod cases {
    use super::*;

    /// A renewal (`/renew`) and a login over a signed-in session (a login renews the id) each
    /// publish `renewed` under the new session's reference, naming the one it replaced, the
    /// user and the instance; the old id's end is a `deleted`.
    pub(super) async fn a_renewal_publishes_renewed_naming_the_session_it_replaced(
        deployment: Deployment,
    ) {
        let prefix = unique_prefix();
        let key = Key::generate();
        let store = deployment.store_with(builder(&prefix));
        let app = app(store.clone(), &key).await;
        let mut events = store.events();
        until_live(&app, &mut events).await;

        let alice = log_in(&app, "alice", None).await;
        let before = SystemTime::now();
        let renewal = send(&app, Method::POST, "/renew", Some(&alice)).await;
        assert_eq!(renewal.status(), 200);
        let renewed = session_cookie(&renewal).expect("a renewed cookie");
        let bob = log_in(&app, "bob", Some(&renewed)).await;
        let after = SystemTime::now();

        let of = |cookie| reference(&prefix, &key, cookie);
        let (alice, renewed, bob) = (of(&alice), of(&renewed), of(&bob));
        let ours = [alice.clone(), renewed.clone(), bob.clone()];
        // The two renewals and the two deletes come in any order across sessions (on a
        // cluster, from different nodes): wait for all five events of ours.
        let mut seen: Vec<SessionEvent> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.len() < 5 {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.next()).await {
                Ok(Some(SessionNotice::Event(event))) => {
                    if ours.contains(&event.session) {
                        seen.push(event);
                    }
                }
                Ok(other) => panic!("{other:?} among events; saw {seen:#?}"),
                Err(_) => panic!(
                    "five events (alice's created and deleted, the renewal's renewed and \
                     deleted, bob's renewed) not all in 10 s; saw {seen:#?}"
                ),
            }
        }
        let kinds = |session: &str| -> Vec<SessionEventKind> {
            seen.iter()
                .filter(|event| event.session == session)
                .map(|event| event.event)
                .collect()
        };
        assert_eq!(
            kinds(&alice),
            [SessionEventKind::Created, SessionEventKind::Deleted],
            "{seen:#?}"
        );
        assert_eq!(
            kinds(&renewed),
            [SessionEventKind::Renewed, SessionEventKind::Deleted],
            "{seen:#?}"
        );
        assert_eq!(kinds(&bob), [SessionEventKind::Renewed], "{seen:#?}");

        for (session, previous, user) in [(&renewed, &alice, "alice"), (&bob, &renewed, "bob")] {
            let event = seen
                .iter()
                .find(|event| event.session == *session && event.event == SessionEventKind::Renewed)
                .expect("found above");
            assert_eq!(event.previous.as_ref(), Some(previous), "{event:?}");
            assert_eq!(event.user.as_deref(), Some(user), "{event:?}");
            assert_eq!(event.instance.as_deref(), Some("test"), "{event:?}");
            let time = humantime::parse_rfc3339(&event.time).expect("an RFC 3339 time");
            // Given in whole milliseconds, cut down.
            assert!(
                epoch_millis(before) <= epoch_millis(time) + 1 && time <= after,
                "{event:?} is not within the requests"
            );
        }
        let deleted = |session: &str| {
            seen.iter()
                .find(|event| event.session == session && event.event == SessionEventKind::Deleted)
                .expect("found above")
        };
        assert_eq!(deleted(&alice).user.as_deref(), Some("alice"));
        assert_eq!(deleted(&renewed).user.as_deref(), Some("alice"));
    }
}

macro_rules! per_topology {
    ($($topology:ident: $deployment:path;)*) => {
        $(
            mod $topology {
                #[actix_web::test]
                async fn a_renewal_publishes_renewed_naming_the_session_it_replaced() {
                    super::cases::a_renewal_publishes_renewed_naming_the_session_it_replaced(
                        $deployment(),
                    )
                    .await;
                }
            }
        )*
    };
}

per_topology! {
    single_node: integration_tests::deployment::Deployment::single;
    cluster: integration_tests::deployment::Deployment::cluster;
    sentinel: integration_tests::deployment::Deployment::sentinel;
}

/// With keyspace notifications for expired keys on (`notify-keyspace-events Ex`), a session
/// that Redis expires after its idle timeout comes as `expired`, no earlier; expired keys that
/// are not sessions of this prefix do not.
#[actix_web::test]
async fn an_idle_session_that_redis_expires_comes_as_expired() {
    let server = RedisServer::start_with(&["--notify-keyspace-events", "Ex"]);
    let prefix = "expiring:";
    let idle = Duration::from_secs(1);
    let key = Key::generate();
    let store = server.store_with(builder(prefix).idle_timeout(idle));
    let app = app(store.clone(), &key).await;
    let mut events = store.events();
    until_live(&app, &mut events).await;

    // Keys that expire and are no session of ours: another prefix's session, a key of ours
    // that is no session. Each is gone (so its notification sent) before the login.
    let mut redis = server.connection().await;
    for other in ["other:s:AAAAAAAAAAAA", "expiring:u:AAAAAAAAAAAA"] {
        let () = redis
            .set_options(
                other,
                "x",
                redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(1)),
            )
            .await
            .expect("SET PX");
        let deadline = Instant::now() + Duration::from_secs(5);
        while redis.exists::<_, bool>(other).await.expect("EXISTS") {
            assert!(Instant::now() < deadline, "{other} never expired");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    let started = Instant::now();
    let alice = log_in(&app, "alice", None).await;
    let alice_reference = reference(prefix, &key, &alice);
    let seen = events_until(&mut events, Duration::from_secs(15), |event| {
        event.event == SessionEventKind::Expired && event.session == alice_reference
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= idle,
        "expired after {waited:?}, idle timeout {idle:?}"
    );
    let expired = seen.last().expect("the one wanted");
    assert_eq!(expired.user, None, "Redis's notification names no user");
    assert_eq!(expired.previous, None);
    let session_key = redis_key(prefix, &session_key_in(&alice, &key));
    assert!(!redis.exists::<_, bool>(&session_key).await.expect("EXISTS"));
    // Every other `expired` is a probe's session (idle as long): never one of the other keys.
    for event in seen
        .iter()
        .filter(|event| event.event == SessionEventKind::Expired)
    {
        assert_ne!(event.session, "AAAAAAAAAAAA", "{seen:#?}");
    }
}

/// On a cluster each primary expires its own keys and sends its own notifications: the
/// subscriber hears the idle sessions that expire on every primary, not only on the node its
/// channel subscription uses.
#[actix_web::test]
async fn on_a_cluster_idle_sessions_that_expire_on_every_primary_come_as_expired() {
    let cluster = RedisCluster::builder()
        .args(&["--notify-keyspace-events", "Ex"])
        .start()
        .expect("a cluster");
    let prefix = "expiring:";
    let key = Key::generate();
    let store = cluster_store(
        &cluster,
        builder(prefix).idle_timeout(Duration::from_secs(1)),
    );
    let app = app(store.clone(), &key).await;
    let mut events = store.events();
    until_live(&app, &mut events).await;

    // Sessions until every primary holds one.
    let primaries = cluster.primaries().expect("the primaries");
    let mut expiring = std::collections::HashMap::new();
    for user in 0..200 {
        let cookie = log_in(&app, &format!("user{user}"), None).await;
        let session_key = redis_key(prefix, &session_key_in(&cookie, &key));
        let primary = cluster.primary_for_key(&session_key).expect("a primary");
        expiring
            .entry(primary)
            .or_insert_with(|| reference(prefix, &key, &cookie));
        if expiring.len() == primaries.len() {
            break;
        }
    }
    assert_eq!(
        expiring.len(),
        primaries.len(),
        "a session on every primary"
    );

    let mut waiting: Vec<String> = expiring.into_values().collect();
    events_until(&mut events, Duration::from_secs(15), |event| {
        if event.event == SessionEventKind::Expired {
            waiting.retain(|session| *session != event.session);
        }
        waiting.is_empty()
    })
    .await;
}

/// A consumer that reads nothing while more than the backlog is published is told `lagged`
/// once it reads again: after the backlog's worth of events, the oldest, in order; every event
/// dropped is covered by a `lagged` before the next one delivered, and a `lagged` comes only
/// for events dropped.
#[actix_web::test]
async fn a_consumer_that_falls_behind_the_backlog_is_told_it_lagged() {
    let server = RedisServer::start();
    let prefix = "lagging:";
    let key = Key::generate();
    let store = server.store_with(builder(prefix));
    let app = app(store.clone(), &key).await;
    let mut events = store.events();
    // A real event, as the store publishes it: the others are copies, numbered.
    let template = serde_json::to_value(until_live(&app, &mut events).await).expect("JSON");
    let numbered = |number: usize| {
        let mut event = template.clone();
        event["session"] = number.to_string().into();
        event.to_string()
    };
    let channel = format!("{prefix}events");
    let mut redis = server.connection().await;
    // Whatever the probes left in flight, drained.
    while let Ok(notice) = tokio::time::timeout(Duration::from_millis(300), events.next()).await {
        assert!(
            matches!(notice, Some(SessionNotice::Event(_))),
            "{notice:?}"
        );
    }

    let published = 3 * BACKLOG;
    let mut pipe = redis::pipe();
    for number in 0..published {
        pipe.publish(&channel, numbered(number)).ignore();
    }
    let () = pipe.query_async(&mut redis).await.expect("PUBLISH");
    // Not reading: the subscriber takes all of them off the connection meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Read all that waits, then publish markers until one comes through.
    let mut notices = Vec::new();
    while let Ok(notice) = tokio::time::timeout(Duration::from_millis(300), events.next()).await {
        notices.push(notice.expect("the stream goes on"));
    }
    let marker = published + 1_000_000;
    let deadline = Instant::now() + Duration::from_secs(15);
    'marked: loop {
        assert!(
            Instant::now() < deadline,
            "no marker came through: {} notices",
            notices.len()
        );
        let () = redis
            .publish(&channel, numbered(marker))
            .await
            .expect("PUBLISH");
        while let Ok(notice) = tokio::time::timeout(Duration::from_millis(500), events.next()).await
        {
            let notice = notice.expect("the stream goes on");
            let is_marker = matches!(&notice, SessionNotice::Event(event) if event.session == marker.to_string());
            notices.push(notice);
            if is_marker {
                break 'marked;
            }
        }
    }

    let mut delivered = 0;
    let mut before_lag = None;
    let mut last: Option<usize> = None;
    let mut lagged = false;
    let mut lags = 0;
    for notice in &notices {
        match notice {
            // Two in a row when the consumer freed a slot for the second and the event after
            // it found none: both cover drops.
            SessionNotice::Lagged => {
                before_lag.get_or_insert(delivered);
                lagged = true;
                lags += 1;
            }
            SessionNotice::Event(event) => {
                let number: usize = event.session.parse().expect("a number");
                if number == marker {
                    // The tail dropped, if any, needs its lag too.
                    assert_eq!(
                        lagged,
                        last != Some(published - 1),
                        "after event {last:?} the marker came with lagged = {lagged}"
                    );
                    lagged = false;
                    continue;
                }
                let next = last.map_or(0, |last| last + 1);
                assert!(
                    number >= next,
                    "event {number} after {last:?}: out of order"
                );
                assert_eq!(
                    lagged,
                    number != next,
                    "event {number} after {last:?} came with lagged = {lagged}"
                );
                lagged = false;
                last = Some(number);
                delivered += 1;
            }
            other => panic!("{other:?} with no fault"),
        }
    }
    println!(
        "{delivered} of {published} events delivered, {lags} lagged, the first after {before_lag:?}"
    );
    assert!(
        lags > 0,
        "no lagged: {delivered} of {published} events delivered"
    );
    assert!(
        before_lag.is_some_and(|before| before >= BACKLOG),
        "lagged after {before_lag:?} events: the backlog holds {BACKLOG}"
    );
    assert!(delivered < published, "{delivered} delivered");
}

/// A subscriber listening on a cluster primary that is killed goes on from another node, says
/// `reconnected`, and gets the events of every shard after the failover, the failed one's
/// included.
#[actix_web::test]
async fn a_subscriber_goes_on_from_another_node_when_its_cluster_primary_is_killed() {
    let _alone = ALONE.lock().await;
    let mut cluster = cluster_failing_over_after(Duration::from_secs(2));
    let prefix = "failing:";
    let channel = format!("{prefix}events");
    let key = Key::generate();
    let store = cluster_store(&cluster, builder(prefix));
    let app = app(store.clone(), &key).await;
    let mut events = store.events();
    until_live(&app, &mut events).await;
    // It listens on the first node it was given: a primary.
    let killed = 0;
    assert!(cluster.primaries().expect("primaries").contains(&killed));
    assert_eq!(
        subscribers(cluster.node(killed), &channel).await,
        1,
        "the subscriber listens on node {killed}"
    );
    let replica = cluster.replicas_of(killed).expect("replicas")[0];

    cluster.stop(killed);
    let stopped = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_notice(&mut events, left, "reconnected after the kill").await {
            SessionNotice::Reconnected => break,
            // A probe's event still in flight.
            SessionNotice::Event(_) => {}
            other => panic!("{other:?} before reconnected"),
        }
    }
    println!("reconnected {:?} after the kill", stopped.elapsed());
    let mut listening = Vec::new();
    for (index, node) in cluster.nodes().iter().enumerate() {
        if node.is_running() && subscribers(node, &channel).await > 0 {
            listening.push(index);
        }
    }
    assert_eq!(listening.len(), 1, "subscribed on nodes {listening:?}");

    cluster.wait_until_ok().expect("the replica takes over");
    let slots = cluster.slots_of(replica).expect("slots");
    assert!(!slots.is_empty(), "node {replica} did not take over");
    // A login on the shard that failed over, and on each other: their events arrive.
    let mut shards: Vec<usize> = cluster.primaries().expect("primaries");
    for _ in 0..200 {
        if shards.is_empty() {
            break;
        }
        let cookie = log_in(&app, "alice", None).await;
        let session_key = redis_key(prefix, &session_key_in(&cookie, &key));
        let shard = cluster.primary_for_key(&session_key).expect("a primary");
        let session = reference(prefix, &key, &cookie);
        events_until(&mut events, Duration::from_secs(10), |event| {
            event.session == session && event.event == SessionEventKind::Created
        })
        .await;
        shards.retain(|other| *other != shard);
    }
    assert!(
        shards.is_empty(),
        "no login of 200 landed on shards {shards:?}"
    );
}

/// A subscriber listening on the primary behind Sentinel that is killed follows the sentinels
/// to the new primary, says `reconnected`, and gets the events written there.
#[actix_web::test]
async fn a_subscriber_follows_the_new_primary_when_the_sentinels_fail_over() {
    let _alone = ALONE.lock().await;
    let mut sentinels = sentinels_failing_over_after(Duration::from_secs(2));
    let prefix = "following:";
    let channel = format!("{prefix}events");
    let key = Key::generate();
    let store = sentinel_store(&sentinels, builder(prefix));
    let app = app(store.clone(), &key).await;
    let mut events = store.events();
    until_live(&app, &mut events).await;
    let old = sentinels.primary().expect("a primary");
    assert_eq!(
        subscribers(&sentinels.servers()[old], &channel).await,
        1,
        "the subscriber listens on the primary"
    );

    sentinels.stop_server(old);
    let stopped = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let what = format!("reconnected after the kill\n{}", sentinels.sentinel_logs());
        match next_notice(&mut events, left, &what).await {
            SessionNotice::Reconnected => break,
            SessionNotice::Event(_) => {}
            other => panic!("{other:?} before reconnected"),
        }
    }
    println!("reconnected {:?} after the kill", stopped.elapsed());
    let new = sentinels.primary().expect("a primary");
    assert_ne!(new, old, "reconnected before the failover");
    assert_eq!(
        subscribers(&sentinels.servers()[new], &channel).await,
        1,
        "the subscriber listens on the new primary"
    );

    let cookie = log_in(&app, "alice", None).await;
    let session = reference(prefix, &key, &cookie);
    events_until(&mut events, Duration::from_secs(10), |event| {
        event.session == session && event.event == SessionEventKind::Created
    })
    .await;
}

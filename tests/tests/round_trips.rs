//! What reaches Redis per request through `SessionMiddleware`, pool checkouts included: round
//! trips counted on the wire by a relay between the store and Redis, commands listed by
//! `MONITOR` (which, unlike `INFO commandstats`, tells the commands a client sent from those
//! its Lua scripts ran).

use std::time::Duration;

use actix_session::config::{
    CookieContentSecurity, TtlExtensionPolicy,
    TtlExtensionPolicy::{OnEveryRequest, OnStateChanges},
};
use actix_web::{
    cookie::{Cookie, Key},
    http::Method,
};
use integration_tests::{
    Monitor, RedisServer, Relay,
    session_app::{
        MiddlewareMode, TestApp, either_app, forge_cookie, get_entry, log_in, send, session_cookie,
    },
};
use session_store::{RedisSessionStore, RedisSessionStoreBuilder};

/// A server, a relay in front of it and a monitor on it.
struct Watched {
    server: RedisServer,
    relay: Relay,
    monitor: Monitor,
}

impl Watched {
    async fn start() -> Self {
        let server = RedisServer::start();
        let relay = Relay::start(([127, 0, 0, 1], server.port()).into()).await;
        let monitor = Monitor::start(&server.client()).await;
        Self {
            server,
            relay,
            monitor,
        }
    }

    /// A store through the relay whose connections stay trusted for the whole test, so that
    /// no health check of the pool shows up among a request's round trips, however slowly the
    /// test runs.
    fn trusting_store(&self) -> RedisSessionStore {
        self.store_with(trusting())
    }

    fn store_with(&self, builder: RedisSessionStoreBuilder) -> RedisSessionStore {
        builder
            .build_with_url(&self.relay.url())
            .expect("a valid URL")
    }

    /// The round trips and the commands clients sent (not those Lua scripts ran) since the
    /// last call.
    async fn seen(&self) -> (u64, Vec<String>) {
        (
            self.relay.take_round_trips(),
            sent_by_clients(&self.monitor).await,
        )
    }

    /// Asserts that what reached Redis since the last look is `round_trips` round trips
    /// carrying `commands`.
    async fn assert_seen(&self, round_trips: u64, commands: &[&str], what: &str) {
        assert_eq!(self.seen().await, trips(round_trips, commands), "{what}");
    }

    /// A watched server, the app (see [`app_on`]) on a store through the relay built by
    /// `builder`, with a key of its own, and a session started through it ([`Self::log_in`]).
    async fn logged_in(
        builder: RedisSessionStoreBuilder,
        policy: TtlExtensionPolicy,
        tracked: bool,
    ) -> (Self, impl TestApp + use<>, Cookie<'static>) {
        let watched = Self::start().await;
        let app = app_on(
            watched.store_with(builder),
            &Key::generate(),
            policy,
            tracked,
        )
        .await;
        let cookie = watched.log_in(&app).await;
        (watched, app, cookie)
    }

    /// Starts a session through `app`, then forgets what it sent.
    async fn log_in(&self, app: &impl TestApp) -> Cookie<'static> {
        let cookie = log_in(app).await;
        self.seen().await;
        cookie
    }
}

/// A store builder whose connections stay trusted for the whole test (see
/// [`Watched::trusting_store`]).
fn trusting() -> RedisSessionStoreBuilder {
    RedisSessionStore::builder().trust_window(Duration::from_secs(3600))
}

/// The commands clients sent (not those Lua scripts ran) that `monitor` saw since the last
/// call.
async fn sent_by_clients(monitor: &Monitor) -> Vec<String> {
    monitor
        .take()
        .await
        .into_iter()
        .filter(|command| !command.from_script)
        .map(|command| command.name)
        .collect()
}

/// What a read of a session sends: its load, which slides its expiry in the same round trip.
const READ: [&str; 2] = ["hgetall", "pexpire"];

/// What a tracked write of one entry sends: the load, then the changed entry.
const WRITE: [&str; 5] = ["hgetall", "pexpire", "hmget", "hset", "pexpire"];

fn trips(round_trips: u64, commands: &[&str]) -> (u64, Vec<String>) {
    (
        round_trips,
        commands.iter().map(|name| (*name).to_owned()).collect(),
    )
}

fn mode(policy: TtlExtensionPolicy) -> MiddlewareMode {
    MiddlewareMode {
        security: CookieContentSecurity::Private,
        policy,
    }
}

/// The app with encrypted cookies and `policy`, behind `TrackChanges` when `tracked`, on
/// `store`.
async fn app_on(
    store: RedisSessionStore,
    key: &Key,
    policy: TtlExtensionPolicy,
    tracked: bool,
) -> impl TestApp + use<> {
    either_app(store, key, mode(policy), tracked).await
}

#[actix_web::test]
async fn a_read_only_request_is_one_round_trip_but_untracked_every_request_policy_two() {
    let read_then_update_ttl = ["hgetall", "pexpire", "pexpire"];
    for (policy, tracked, round_trips, commands, what) in [
        (OnStateChanges, true, 1, &READ[..], "OnStateChanges"),
        (OnEveryRequest, true, 1, &READ[..], "OnEveryRequest"),
        (
            OnEveryRequest,
            false,
            2,
            &read_then_update_ttl[..],
            "load, then update_ttl",
        ),
    ] {
        let (watched, app, cookie) = Watched::logged_in(trusting(), policy, tracked).await;

        assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
        watched.assert_seen(round_trips, commands, what).await;
    }
}

#[actix_web::test]
async fn a_new_session_is_one_round_trip_and_a_write_two() {
    let (watched, app, cookie) = Watched::logged_in(trusting(), OnStateChanges, false).await;
    // Once, so that Redis has the replace script before the count (a server that lacks it
    // costs one more round trip, for its body).
    send(&app, Method::POST, "/set/user/bob", Some(&cookie)).await;
    watched.seen().await;

    send(&app, Method::POST, "/set/user/carol", None).await;
    watched.assert_seen(1, &["evalsha"], "new session").await;
    send(&app, Method::POST, "/set/user/dave", Some(&cookie)).await;
    let update = ["hgetall", "pexpire", "evalsha"];
    watched.assert_seen(2, &update, "load, then update").await;
    send(&app, Method::POST, "/renew", Some(&cookie)).await;
    let renewal = ["hgetall", "pexpire", "del", "evalsha"];
    watched.assert_seen(3, &renewal, "load, delete, save").await;
}

#[actix_web::test]
async fn a_tracked_write_is_two_round_trips_of_plain_commands() {
    let (watched, app, cookie) = Watched::logged_in(trusting(), OnStateChanges, true).await;

    send(&app, Method::POST, "/set/user/bob", Some(&cookie)).await;
    watched
        .assert_seen(2, &WRITE, "load, then the changed entry")
        .await;
    send(&app, Method::POST, "/remove/user", Some(&cookie)).await;
    let removal = ["hgetall", "pexpire", "hmget", "hdel", "pexpire"];
    watched.assert_seen(2, &removal, "a removal").await;
    send(&app, Method::POST, "/remove/user", Some(&cookie)).await;
    watched
        .assert_seen(1, &READ, "nothing changed, nothing written")
        .await;
}

#[actix_web::test]
async fn with_a_user_entry_reads_and_writes_of_other_entries_cost_no_more() {
    let users = trusting().user_entry("user");
    let (watched, app, _) = Watched::logged_in(users, OnEveryRequest, true).await;

    let visit = send(&app, Method::POST, "/set/theme/dark", None).await;
    let visitor = session_cookie(&visit).expect("a cookie");
    watched
        .assert_seen(1, &["evalsha"], "an anonymous session")
        .await;
    assert_eq!(get_entry(&app, "theme", Some(&visitor)).await, "dark");
    watched.assert_seen(1, &READ, "a read").await;
    let login = send(&app, Method::POST, "/set/user/alice", Some(&visitor)).await;
    let member = session_cookie(&login).expect("a cookie");
    watched
        .assert_seen(
            3,
            &["hgetall", "pexpire", "evalsha", "hmget", "hset", "pexpire"],
            "gaining the user: the load, the user's index (one script: add, prune, count \
             against the limit), then the write, which switches the timeout in its own pipeline",
        )
        .await;

    // With the user in place, reads and writes of other entries cost what they always did:
    // the index is not touched.
    assert_eq!(get_entry(&app, "user", Some(&member)).await, "alice");
    watched.assert_seen(1, &READ, "a read").await;
    send(&app, Method::POST, "/set/theme/light", Some(&member)).await;
    watched.assert_seen(2, &WRITE, "a write").await;
}

#[actix_web::test]
async fn an_idle_connection_proves_itself_before_reuse() {
    let distrusting = RedisSessionStore::builder().trust_window(Duration::ZERO);
    let (watched, app, cookie) = Watched::logged_in(distrusting, OnStateChanges, false).await;

    get_entry(&app, "user", Some(&cookie)).await;
    let checked_read = ["unwatch", "ping", "hgetall", "pexpire"];
    watched
        .assert_seen(2, &checked_read, "the pool's check, then the read")
        .await;
}

#[actix_web::test]
async fn a_malformed_cookie_sends_nothing_at_all() {
    let watched = Watched::start().await;
    let key = Key::generate();
    let app = app_on(watched.trusting_store(), &key, OnEveryRequest, false).await;
    let forged = forge_cookie(&key, CookieContentSecurity::Private, "{not*an id}");
    assert_eq!(get_entry(&app, "user", Some(&forged)).await, "none");
    watched
        .assert_seen(0, &[], "not even a pool checkout")
        .await;
    drop(watched.server);
}

/// With the near cache, a read of a session the instance read before is served from memory:
/// no command reaches Redis. A read after a write is one round trip again (the read's script,
/// which slides the expiry only when it is due), and a write costs what it costs without it.
#[actix_web::test]
async fn with_the_near_cache_a_cached_read_sends_nothing() {
    let (watched, app, cookie) =
        Watched::logged_in(trusting().near_cache(100), OnStateChanges, true).await;
    // The first read also leaves the script in Redis's cache (`EVAL` after `NOSCRIPT`).
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
    watched.seen().await;
    read_from_memory(&watched, &app, &cookie, "user", "alice").await;
    send(&app, Method::POST, "/set/a/1", Some(&cookie)).await;
    assert_eq!(
        watched.seen().await,
        trips(1, &["hmget", "hset", "pexpire"]),
        "a write (its load cached)"
    );
    assert_eq!(get_entry(&app, "a", Some(&cookie)).await, "1");
    assert_eq!(
        watched.seen().await,
        trips(1, &["evalsha"]),
        "the read after a write"
    );
    read_from_memory(&watched, &app, &cookie, "a", "1").await;
}

/// Reads entry `name` until a read reaches Redis not at all (0 round trips, no command), three
/// times in a row; each read finds `value`. Reads go to Redis until the near cache's link is up
/// (a few heartbeats), and while a stalled machine leaves it unheard for 400 ms.
async fn read_from_memory(
    watched: &Watched,
    app: &impl TestApp,
    cookie: &Cookie<'static>,
    name: &str,
    value: &str,
) {
    let (mut in_a_row, mut reads) = (0, 0);
    while in_a_row < 3 {
        assert!(
            reads < 200,
            "{reads} reads, and no three in a row from memory"
        );
        reads += 1;
        assert_eq!(get_entry(app, name, Some(cookie)).await, value);
        if watched.seen().await == trips(0, &[]) {
            in_a_row += 1;
        } else {
            in_a_row = 0;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A signed-in page of the demo and its `/api/me`, both of which say where the session lives,
/// cost Redis no more than the read of the session: where it lives is known without asking.
/// With the demo's near cache, the first is the read's script and the next nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_page_of_the_demo_costs_only_the_read() {
    use integration_tests::demo::{ApiClient, Demo};

    let server = RedisServer::start();
    let monitor = Monitor::start(&server.client()).await;
    for near_cache in ["0", "1000"] {
        let demo = Demo::launch_on(&server, 1, &["--near-cache", near_cache]);
        let api = ApiClient::default();
        let cookie = api
            .log_in(&demo, 0, "alice", "alice-password")
            .cookie
            .expect("a session cookie");
        let me = api.call("GET", &demo, 0, "/api/me", Some(&cookie));
        assert_eq!(me.status, 200, "{}", me.text);
        assert_eq!(
            me.json["redis"]["node"].as_str(),
            Some(format!("127.0.0.1:{}", server.port()).as_str()),
            "/api/me names the server: {}",
            me.json
        );
        sent_by_clients(&monitor).await;
        let expected = match near_cache {
            "0" => [READ, READ].concat(),
            _ => Vec::new(),
        };
        // Three rounds in a row cost what they should; with the near cache, reads go to Redis
        // until its link is up, and while a stalled machine leaves it unheard for 400 ms.
        let (mut in_a_row, mut rounds) = (0, 0);
        while in_a_row < 3 {
            assert!(rounds < 100, "no three rounds in a row cost {expected:?}");
            rounds += 1;
            let me = api.call("GET", &demo, 0, "/api/me", Some(&cookie));
            assert_eq!(me.status, 200);
            let home = api.get_page(&demo.url(0, "/"), &[&cookie]);
            assert_eq!(home.status, 200);
            assert!(home.text.contains(&format!("127.0.0.1:{}", server.port())));
            let sent = sent_by_clients(&monitor).await;
            if near_cache == "0" {
                assert_eq!(sent, trips(0, &expected).1, "/api/me and the home page");
            }
            in_a_row = if sent == trips(0, &expected).1 {
                in_a_row + 1
            } else {
                0
            };
        }
        drop(demo);
        sent_by_clients(&monitor).await;
    }
}

/// With the setting for switching from actix-session's own store on, a read of a session in
/// the store's layout is still one round trip, whether its id is the store's or the old
/// store's (after its move); only a key found in neither layout costs one more. An old
/// session read in place (interoperating) is one `GET`, and a tracked write of it one script
/// more.
#[actix_web::test]
async fn the_legacy_setting_keeps_a_read_one_round_trip() {
    use session_store::LegacySessions;

    let watched = Watched::start().await;
    let key = Key::generate();
    let old_session = async |id: &str| {
        let value = r#"{"user":"\"alice\""}"#;
        let mut redis = watched.server.connection().await;
        let () = redis::AsyncCommands::set(&mut redis, id, value)
            .await
            .expect("SET");
    };
    let old_cookie = |id: &str| forge_cookie(&key, CookieContentSecurity::Private, id);
    let old_id = |n: char| n.to_string().repeat(64);

    let migrating = trusting().legacy_sessions(LegacySessions::migrate());
    let app = app_on(watched.store_with(migrating), &key, OnStateChanges, true).await;
    let own = watched.log_in(&app).await;
    assert_eq!(get_entry(&app, "user", Some(&own)).await, "alice");
    watched
        .assert_seen(1, &READ, "the store's own session")
        .await;
    old_session(&old_id('a')).await;
    assert_eq!(
        get_entry(&app, "user", Some(&old_cookie(&old_id('a')))).await,
        "alice"
    );
    watched.seen().await;
    assert_eq!(
        get_entry(&app, "user", Some(&old_cookie(&old_id('a')))).await,
        "alice"
    );
    watched.assert_seen(1, &READ, "a moved session").await;
    assert_eq!(
        get_entry(&app, "user", Some(&old_cookie(&old_id('b')))).await,
        "none"
    );
    let neither = ["hgetall", "pexpire", "get"];
    watched
        .assert_seen(2, &neither, "a session in neither layout")
        .await;

    let interoperating = trusting().legacy_sessions(LegacySessions::interoperate());
    let app = app_on(
        watched.store_with(interoperating),
        &key,
        OnStateChanges,
        true,
    )
    .await;
    old_session(&old_id('c')).await;
    // Its pool's first connection (a version check) out of the count.
    get_entry(&app, "user", Some(&own)).await;
    watched.seen().await;
    assert_eq!(
        get_entry(&app, "user", Some(&old_cookie(&old_id('c')))).await,
        "alice"
    );
    watched
        .assert_seen(1, &["get"], "an old session read in place")
        .await;
    // Once, so that Redis has the script before the count.
    send(
        &app,
        Method::POST,
        "/set/theme/dark",
        Some(&old_cookie(&old_id('c'))),
    )
    .await;
    watched.seen().await;
    send(
        &app,
        Method::POST,
        "/set/theme/light",
        Some(&old_cookie(&old_id('c'))),
    )
    .await;
    let write = ["get", "evalsha"];
    watched
        .assert_seen(2, &write, "an old session's write")
        .await;
}

/// The same counts on a cluster: a relay in front of every node (redis-rs's cluster client
/// maps the nodes' addresses onto the relays'), a monitor on every primary.
mod cluster {
    use std::collections::HashMap;

    use local_redis::RedisCluster;
    use redis::cluster::{ClusterClient, NodeAddress};
    use session_store::Manager;

    use super::*;

    struct WatchedCluster {
        cluster: RedisCluster,
        relays: Vec<Relay>,
        monitor: Monitor,
    }

    impl WatchedCluster {
        async fn start() -> Self {
            let cluster = RedisCluster::start().expect("a cluster starts");
            let mut relays = Vec::new();
            for node in cluster.nodes() {
                relays.push(Relay::start(([127, 0, 0, 1], node.port()).into()).await);
            }
            let primaries: Vec<redis::Client> = cluster
                .primaries()
                .expect("primaries")
                .into_iter()
                .map(|node| redis::Client::open(cluster.node(node).url()).expect("a URL"))
                .collect();
            let monitor = Monitor::start_all(&primaries).await;
            Self {
                cluster,
                relays,
                monitor,
            }
        }

        /// A store whose cluster connections go through the relays.
        fn store_with(&self, builder: RedisSessionStoreBuilder) -> RedisSessionStore {
            let relayed: HashMap<NodeAddress, NodeAddress> = self
                .cluster
                .nodes()
                .iter()
                .zip(&self.relays)
                .map(|(node, relay)| {
                    let port = relay.url().rsplit(':').next().expect("a port").parse();
                    (
                        NodeAddress::new("127.0.0.1", node.port()),
                        NodeAddress::new("127.0.0.1", port.expect("a port")),
                    )
                })
                .collect();
            let client = ClusterClient::builder(self.cluster.urls())
                .node_address_map(relayed)
                .build()
                .expect("a cluster client");
            builder
                .build_with_manager(Manager::from(client))
                .expect("valid settings")
        }

        async fn seen(&self) -> (u64, Vec<String>) {
            let commands = sent_by_clients(&self.monitor).await;
            let round_trips = self.relays.iter().map(Relay::take_round_trips).sum();
            (round_trips, commands)
        }

        /// As [`Watched::assert_seen`], over every node.
        async fn assert_seen(&self, round_trips: u64, commands: &[&str], what: &str) {
            assert_eq!(self.seen().await, trips(round_trips, commands), "{what}");
        }
    }

    #[actix_web::test]
    async fn reads_and_writes_cost_the_same_round_trips_on_a_cluster() {
        let watched = WatchedCluster::start().await;
        let key = Key::generate();
        // No trust window at all: a cluster connection is never checked anyway.
        let store = watched.store_with(RedisSessionStore::builder().trust_window(Duration::ZERO));
        let app = app_on(store, &key, OnEveryRequest, true).await;
        let cookie = log_in(&app).await;
        send(&app, Method::POST, "/set/theme/light", Some(&cookie)).await;
        // Every primary has the save script, as after the first logins on each.
        let save = redis::Script::new(concat!(
            include_str!("../../session-store/src/session/lua/prelude.lua"),
            include_str!("../../session-store/src/session/lua/save.lua"),
        ));
        for node in watched.cluster.nodes() {
            let mut connection = redis::Client::open(node.url())
                .expect("a URL")
                .get_multiplexed_async_connection()
                .await
                .expect("the node answers");
            let _: String = save
                .prepare_invoke()
                .load_async(&mut connection)
                .await
                .expect("SCRIPT LOAD");
        }
        watched.seen().await;

        assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
        watched.assert_seen(1, &READ, "a read").await;
        send(&app, Method::POST, "/set/theme/dark", Some(&cookie)).await;
        watched.assert_seen(2, &WRITE, "a write").await;
        send(&app, Method::POST, "/set/user/carol", None).await;
        watched.assert_seen(1, &["evalsha"], "a new session").await;
    }
}

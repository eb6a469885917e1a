//! What reaches Redis per request through `SessionMiddleware`, pool checkouts included: round
//! trips counted on the wire by a relay between the store and Redis, commands listed by
//! `MONITOR` (which, unlike `INFO commandstats`, tells the commands a client sent from those
//! its Lua scripts ran).

use std::time::Duration;

use actix_session::config::{CookieContentSecurity, TtlExtensionPolicy};
use actix_web::{cookie::Key, http::Method};
use integration_tests::{
    Monitor, RedisServer, Relay,
    session_app::{
        Gate, MiddlewareMode, TestApp, bare_app, forge_cookie, get_entry, log_in, send, tracked_app,
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
        self.store_with(RedisSessionStore::builder().trust_window(Duration::from_secs(3600)))
    }

    fn store_with(&self, builder: RedisSessionStoreBuilder) -> RedisSessionStore {
        builder
            .build_with_url(&self.relay.url())
            .expect("a valid URL")
    }

    /// The round trips and the commands clients sent (not those Lua scripts ran) since the
    /// last call.
    async fn seen(&self) -> (u64, Vec<String>) {
        let commands = self
            .monitor
            .take()
            .await
            .into_iter()
            .filter(|command| !command.from_script)
            .map(|command| command.name)
            .collect();
        (self.relay.take_round_trips(), commands)
    }

    /// Starts a session through `app`, then forgets what it sent.
    async fn log_in(&self, app: &impl TestApp) -> actix_web::cookie::Cookie<'static> {
        let cookie = log_in(app).await;
        self.seen().await;
        cookie
    }
}

fn trips(round_trips: u64, commands: &[&str]) -> (u64, Vec<String>) {
    (
        round_trips,
        commands.iter().map(|name| (*name).to_owned()).collect(),
    )
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
        let watched = Watched::start().await;
        let key = Key::generate();
        let store = watched.trusting_store();
        let app = tracked_app(store, &key, mode(policy.clone()), Gate::default()).await;
        let cookie = watched.log_in(&app).await;

        assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
        assert_eq!(
            watched.seen().await,
            trips(1, &["hgetall", "pexpire"]),
            "{policy:?}"
        );
    }
}

#[actix_web::test]
async fn without_track_changes_every_request_policy_costs_a_second_round_trip() {
    let watched = Watched::start().await;
    let key = Key::generate();
    let store = watched.trusting_store();
    let app = bare_app(
        store,
        &key,
        mode(TtlExtensionPolicy::OnEveryRequest),
        Gate::default(),
    )
    .await;
    let cookie = watched.log_in(&app).await;

    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
    assert_eq!(
        watched.seen().await,
        trips(2, &["hgetall", "pexpire", "pexpire"]),
        "load, then update_ttl"
    );
}

#[actix_web::test]
async fn a_new_session_is_one_round_trip_and_a_write_two() {
    let watched = Watched::start().await;
    let key = Key::generate();
    let store = watched.trusting_store();
    let app = bare_app(
        store,
        &key,
        mode(TtlExtensionPolicy::OnStateChanges),
        Gate::default(),
    )
    .await;
    let cookie = watched.log_in(&app).await;
    // Once, so that Redis has the replace script before the count (a server that lacks it
    // costs one more round trip, for its body).
    send(&app, Method::POST, "/set/user/bob", Some(&cookie)).await;
    watched.seen().await;

    send(&app, Method::POST, "/set/user/carol", None).await;
    assert_eq!(watched.seen().await, trips(1, &["evalsha"]), "new session");
    send(&app, Method::POST, "/set/user/dave", Some(&cookie)).await;
    assert_eq!(
        watched.seen().await,
        trips(2, &["hgetall", "pexpire", "evalsha"]),
        "load, then update"
    );
    send(&app, Method::POST, "/renew", Some(&cookie)).await;
    assert_eq!(
        watched.seen().await,
        trips(3, &["hgetall", "pexpire", "del", "evalsha"]),
        "load, delete, save"
    );
}

#[actix_web::test]
async fn a_tracked_write_is_two_round_trips_of_plain_commands() {
    let watched = Watched::start().await;
    let key = Key::generate();
    let store = watched.trusting_store();
    let app = tracked_app(
        store,
        &key,
        mode(TtlExtensionPolicy::OnStateChanges),
        Gate::default(),
    )
    .await;
    let cookie = watched.log_in(&app).await;

    send(&app, Method::POST, "/set/user/bob", Some(&cookie)).await;
    assert_eq!(
        watched.seen().await,
        trips(2, &["hgetall", "pexpire", "hmget", "hset", "pexpire"]),
        "load, then the changed entry"
    );
    send(&app, Method::POST, "/remove/user", Some(&cookie)).await;
    assert_eq!(
        watched.seen().await,
        trips(2, &["hgetall", "pexpire", "hmget", "hdel", "pexpire"])
    );
    send(&app, Method::POST, "/remove/user", Some(&cookie)).await;
    assert_eq!(
        watched.seen().await,
        trips(1, &["hgetall", "pexpire"]),
        "nothing changed, nothing written"
    );
}

#[actix_web::test]
async fn with_a_user_entry_reads_and_writes_of_other_entries_cost_no_more() {
    let watched = Watched::start().await;
    let key = Key::generate();
    let store = watched.store_with(
        RedisSessionStore::builder()
            .user_entry("user")
            .trust_window(Duration::from_secs(3600)),
    );
    let app = tracked_app(
        store,
        &key,
        mode(TtlExtensionPolicy::OnEveryRequest),
        Gate::default(),
    )
    .await;
    watched.log_in(&app).await;

    let visit = send(&app, Method::POST, "/set/theme/dark", None).await;
    let visitor = integration_tests::session_app::session_cookie(&visit).expect("a cookie");
    assert_eq!(
        watched.seen().await,
        trips(1, &["evalsha"]),
        "an anonymous session"
    );
    assert_eq!(get_entry(&app, "theme", Some(&visitor)).await, "dark");
    assert_eq!(watched.seen().await, trips(1, &["hgetall", "pexpire"]));
    let login = send(&app, Method::POST, "/set/user/alice", Some(&visitor)).await;
    let member = integration_tests::session_app::session_cookie(&login).expect("a cookie");
    assert_eq!(
        watched.seen().await,
        trips(
            3,
            &["hgetall", "pexpire", "evalsha", "hmget", "hset", "pexpire"]
        ),
        "gaining the user: the load, the user's index (one script: add, prune, count against \
         the limit), then the write, which switches the timeout in its own pipeline"
    );

    // With the user in place, reads and writes of other entries cost what they always did:
    // the index is not touched.
    assert_eq!(get_entry(&app, "user", Some(&member)).await, "alice");
    assert_eq!(watched.seen().await, trips(1, &["hgetall", "pexpire"]));
    send(&app, Method::POST, "/set/theme/light", Some(&member)).await;
    assert_eq!(
        watched.seen().await,
        trips(2, &["hgetall", "pexpire", "hmget", "hset", "pexpire"])
    );
}

#[actix_web::test]
async fn an_idle_connection_proves_itself_before_reuse() {
    let watched = Watched::start().await;
    let key = Key::generate();
    let store = watched.store_with(RedisSessionStore::builder().trust_window(Duration::ZERO));
    let app = bare_app(
        store,
        &key,
        mode(TtlExtensionPolicy::OnStateChanges),
        Gate::default(),
    )
    .await;
    let cookie = watched.log_in(&app).await;

    get_entry(&app, "user", Some(&cookie)).await;
    assert_eq!(
        watched.seen().await,
        trips(2, &["unwatch", "ping", "hgetall", "pexpire"]),
        "the pool's check, then the read"
    );
}

#[actix_web::test]
async fn a_malformed_cookie_sends_nothing_at_all() {
    let watched = Watched::start().await;
    let key = Key::generate();
    let store = watched.trusting_store();
    let app = bare_app(
        store,
        &key,
        mode(TtlExtensionPolicy::OnEveryRequest),
        Gate::default(),
    )
    .await;
    let forged = forge_cookie(&key, CookieContentSecurity::Private, "{not*an id}");
    assert_eq!(get_entry(&app, "user", Some(&forged)).await, "none");
    assert_eq!(
        watched.seen().await,
        trips(0, &[]),
        "not even a pool checkout"
    );
    drop(watched.server);
}

/// The same counts on a cluster: a relay in front of every node (redis-rs's cluster client
/// maps the nodes' addresses onto the relays'), a monitor on every primary.
mod cluster {
    use std::collections::HashMap;

    use local_redis::RedisCluster;
    use redis::cluster::{ClusterClient, NodeAddress};
    use session_store::{Manager, Pool, Runtime};

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
            let pool = Pool::builder(Manager::from(client))
                .runtime(Runtime::Tokio1)
                .build()
                .expect("a pool");
            builder.build_with_pool(pool).expect("valid settings")
        }

        async fn seen(&self) -> (u64, Vec<String>) {
            let commands = self
                .monitor
                .take()
                .await
                .into_iter()
                .filter(|command| !command.from_script)
                .map(|command| command.name)
                .collect();
            let round_trips = self.relays.iter().map(Relay::take_round_trips).sum();
            (round_trips, commands)
        }
    }

    #[actix_web::test]
    async fn reads_and_writes_cost_the_same_round_trips_on_a_cluster() {
        let watched = WatchedCluster::start().await;
        let key = Key::generate();
        // No trust window at all: a cluster connection is never checked anyway.
        let store = watched.store_with(RedisSessionStore::builder().trust_window(Duration::ZERO));
        let app = tracked_app(
            store,
            &key,
            mode(TtlExtensionPolicy::OnEveryRequest),
            Gate::default(),
        )
        .await;
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
        assert_eq!(
            watched.seen().await,
            trips(1, &["hgetall", "pexpire"]),
            "a read"
        );
        send(&app, Method::POST, "/set/theme/dark", Some(&cookie)).await;
        assert_eq!(
            watched.seen().await,
            trips(2, &["hgetall", "pexpire", "hmget", "hset", "pexpire"]),
            "a write"
        );
        send(&app, Method::POST, "/set/user/carol", None).await;
        assert_eq!(
            watched.seen().await,
            trips(1, &["evalsha"]),
            "a new session"
        );
    }
}

//! The Redis deployments the store's suites run on: a single server of the test's own, or a
//! cluster shared by the tests of one test binary, each test under a key prefix of its own.

use std::{
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use local_redis::{RedisCluster, RedisSentinels};
use redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster_async::ClusterConnection,
};
use session_store::{RedisSessionStore, RedisSessionStoreBuilder};

use crate::{Monitor, RedisServer};

/// One Redis deployment.
pub enum Deployment {
    /// A server of this test's own.
    Single(RedisServer),
    /// The cluster this test binary's tests share.
    Cluster(Arc<RedisCluster>),
    /// The Sentinel setup (a primary, a replica, three sentinels) this test binary's tests
    /// share.
    Sentinel(Arc<RedisSentinels>),
}

impl Deployment {
    /// A fresh single server.
    pub fn single() -> Self {
        Self::Single(RedisServer::start())
    }

    /// The shared cluster: started by the first test that asks for it, stopped when the last
    /// test holding it ends.
    pub fn cluster() -> Self {
        Self::Cluster(shared_cluster())
    }

    /// The shared Sentinel setup, as [`cluster`](Self::cluster) shares its cluster.
    pub fn sentinel() -> Self {
        Self::Sentinel(shared(&SENTINELS, RedisSentinels::start))
    }

    /// The same kind of deployment, for one test alone: for a test that pauses Redis, which
    /// would hold up the other tests sharing a cluster or a Sentinel setup. Its sentinels wait
    /// ten seconds before they count a primary as down, so a pause starts no failover.
    pub fn alone(&self) -> Self {
        match self {
            Self::Single(_) => Self::single(),
            Self::Cluster(_) => Self::Cluster(Arc::new(started(RedisCluster::start()))),
            Self::Sentinel(_) => Self::Sentinel(Arc::new(sentinels_failing_over_after(
                Duration::from_secs(10),
            ))),
        }
    }

    /// How many servers take writes: the cluster's primaries, or one.
    pub fn primaries(&self) -> usize {
        match self {
            Self::Cluster(cluster) => cluster
                .primaries()
                .expect("the cluster names its primaries")
                .len(),
            _ => 1,
        }
    }

    /// `"single"`, `"cluster"` or `"sentinel"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Single(_) => "single",
            Self::Cluster(_) => "cluster",
            Self::Sentinel(_) => "sentinel",
        }
    }

    /// A store from `builder` on this deployment.
    pub fn store_with(&self, builder: RedisSessionStoreBuilder) -> RedisSessionStore {
        match self {
            Self::Single(server) => builder
                .build_with_url(&server.url())
                .expect("a valid loopback URL"),
            Self::Cluster(cluster) => cluster_store(cluster, builder),
            Self::Sentinel(sentinels) => sentinel_store(sentinels, builder),
        }
    }

    /// A connection for inspecting the deployment from the test (behind Sentinel, to the
    /// primary now).
    pub async fn connection(&self) -> AnyConnection {
        match self {
            Self::Single(server) => AnyConnection::Node(server.connection().await),
            Self::Sentinel(_) => AnyConnection::Node(
                self.primary_client()
                    .get_multiplexed_async_connection()
                    .await
                    .expect("the primary answers"),
            ),
            Self::Cluster(cluster) => AnyConnection::Cluster(
                redis::cluster::ClusterClient::new(cluster.urls())
                    .expect("valid loopback URLs")
                    .get_async_connection()
                    .await
                    .expect("the cluster answers"),
            ),
        }
    }

    /// A client per server (every node of a cluster, the primary and the replica behind
    /// Sentinel).
    pub fn clients(&self) -> Vec<redis::Client> {
        match self {
            Self::Single(server) => vec![server.client()],
            Self::Sentinel(sentinels) => sentinels.servers().iter().map(client).collect(),
            Self::Cluster(cluster) => cluster.nodes().iter().map(client).collect(),
        }
    }

    /// A client of the server the sentinels name as primary now.
    fn primary_client(&self) -> redis::Client {
        let Self::Sentinel(sentinels) = self else {
            panic!("only a Sentinel setup has a primary to find");
        };
        client(&sentinels.servers()[sentinels.primary().expect("the sentinels name a primary")])
    }

    /// `MONITOR` on every server that takes clients' writes: the single server, or every
    /// primary of the cluster (a replica's monitor would show what its primary replicates).
    pub async fn monitor(&self) -> Monitor {
        let primaries = match self {
            Self::Single(server) => vec![server.client()],
            Self::Sentinel(_) => vec![self.primary_client()],
            Self::Cluster(cluster) => cluster
                .primaries()
                .expect("the cluster names its primaries")
                .into_iter()
                .map(|node| client(cluster.node(node)))
                .collect(),
        };
        Monitor::start_all(&primaries).await
    }

    /// Makes every server hold every client's commands for `duration`.
    pub async fn pause(&self, duration: Duration) {
        for client in self.clients() {
            let () = redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(u64::try_from(duration.as_millis()).expect("a short pause"))
                .arg("ALL")
                .query_async(
                    &mut client
                        .get_multiplexed_async_connection()
                        .await
                        .expect("Redis answers"),
                )
                .await
                .expect("CLIENT PAUSE");
        }
    }
}

/// A prefix no other test of this process uses, for tests that share a deployment.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("test{}:", NEXT.fetch_add(1, Ordering::Relaxed))
}

static CLUSTER: Mutex<Weak<RedisCluster>> = Mutex::new(Weak::new());
static SENTINELS: Mutex<Weak<RedisSentinels>> = Mutex::new(Weak::new());

/// The cluster of this test binary, shared by the tests running at the same time.
fn shared_cluster() -> Arc<RedisCluster> {
    shared(&CLUSTER, RedisCluster::start)
}

/// What `slot` holds, or a new one from `start` when no test holds one now: a deployment lives
/// as long as a test holds it, and is stopped when the last one lets go.
fn shared<T>(
    slot: &Mutex<Weak<T>>,
    start: impl FnOnce() -> Result<T, local_redis::Error>,
) -> Arc<T> {
    let mut shared = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(running) = shared.upgrade() {
        return running;
    }
    let running = Arc::new(started(start()));
    *shared = Arc::downgrade(&running);
    running
}

/// A store from `builder` on `cluster`.
pub fn cluster_store(
    cluster: &RedisCluster,
    builder: RedisSessionStoreBuilder,
) -> RedisSessionStore {
    let manager = session_store::Manager::cluster(cluster.urls()).expect("valid addresses");
    builder
        .build_with_manager(manager)
        .expect("valid loopback URLs")
}

/// A store from `builder` on the primary behind `sentinels`.
pub fn sentinel_store(
    sentinels: &RedisSentinels,
    builder: RedisSessionStoreBuilder,
) -> RedisSessionStore {
    let urls = sentinels.sentinel_urls();
    let manager =
        session_store::Manager::sentinel(urls, sentinels.master_name()).expect("valid addresses");
    builder
        .build_with_manager(manager)
        .expect("valid loopback URLs")
}

/// A cluster of this test's own whose nodes count a silent node as failed after
/// `node_timeout`.
pub fn cluster_failing_over_after(node_timeout: Duration) -> RedisCluster {
    started(RedisCluster::builder().node_timeout(node_timeout).start())
}

/// A Sentinel setup of this test's own whose sentinels count a silent primary as down after
/// `down_after`.
pub fn sentinels_failing_over_after(down_after: Duration) -> RedisSentinels {
    started(RedisSentinels::builder().down_after(down_after).start())
}

fn started<T>(result: Result<T, local_redis::Error>) -> T {
    result.unwrap_or_else(|err| panic!("{err}. `scripts/test` installs what it needs."))
}

fn client(server: &local_redis::RedisServer) -> redis::Client {
    redis::Client::open(server.url()).expect("a valid loopback URL")
}

/// A connection to a single server or to a cluster, for inspecting either the same way.
#[derive(Clone)]
pub enum AnyConnection {
    /// To one server.
    Node(MultiplexedConnection),
    /// To a cluster: keyed commands go to the node that owns the key, `KEYS` to every primary.
    Cluster(ClusterConnection),
}

impl ConnectionLike for AnyConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(node) => node.req_packed_command(cmd),
            Self::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(node) => node.req_packed_commands(cmd, offset, count),
            Self::Cluster(cluster) => cluster.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(node) => node.get_db(),
            Self::Cluster(cluster) => cluster.get_db(),
        }
    }
}

//! The Redis deployments the store's suites run on: a single server of the test's own, or a
//! cluster shared by the tests of one test binary, each test under a key prefix of its own.

use std::{
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use local_redis::RedisCluster;
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

    /// `"single"` or `"cluster"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Single(_) => "single",
            Self::Cluster(_) => "cluster",
        }
    }

    /// A store from `builder` on this deployment.
    pub fn store_with(&self, builder: RedisSessionStoreBuilder) -> RedisSessionStore {
        match self {
            Self::Single(server) => builder.build_with_url(&server.url()),
            Self::Cluster(cluster) => builder.build_with_cluster(cluster.urls()),
        }
        .expect("valid loopback URLs")
    }

    /// A connection for inspecting the deployment from the test.
    pub async fn connection(&self) -> AnyConnection {
        match self {
            Self::Single(server) => AnyConnection::Node(server.connection().await),
            Self::Cluster(cluster) => AnyConnection::Cluster(
                redis::cluster::ClusterClient::new(cluster.urls())
                    .expect("valid loopback URLs")
                    .get_async_connection()
                    .await
                    .expect("the cluster answers"),
            ),
        }
    }

    /// A client per server (every node of a cluster).
    pub fn clients(&self) -> Vec<redis::Client> {
        match self {
            Self::Single(server) => vec![server.client()],
            Self::Cluster(cluster) => cluster
                .urls()
                .into_iter()
                .map(|url| redis::Client::open(url).expect("a valid loopback URL"))
                .collect(),
        }
    }

    /// `MONITOR` on every server that takes clients' writes: the single server, or every
    /// primary of the cluster (a replica's monitor would show what its primary replicates).
    pub async fn monitor(&self) -> Monitor {
        let primaries = match self {
            Self::Single(server) => vec![server.client()],
            Self::Cluster(cluster) => cluster
                .primaries()
                .expect("the cluster names its primaries")
                .into_iter()
                .map(|node| cluster.node(node).url())
                .map(|url| redis::Client::open(url).expect("a valid loopback URL"))
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

/// The cluster of this test binary, shared by the tests running at the same time.
fn shared_cluster() -> Arc<RedisCluster> {
    static SHARED: Mutex<Weak<RedisCluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(cluster) = shared.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(
        RedisCluster::start()
            .unwrap_or_else(|err| panic!("{err}. `scripts/test` installs what it needs.")),
    );
    *shared = Arc::downgrade(&cluster);
    cluster
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

//! The connection pool: deadpool, with a manager that checks a connection's health only when
//! the connection has not proven itself moments ago.
//!
//! Two things make deadpool-redis's own pools slow for sessions. Their managers check every
//! connection they hand out again: `UNWATCH` + `PING` on a single node, one extra round trip per
//! request that doubles the cost of a session read, and on a cluster a `PING` to every primary.
//! And a request holds its connection until it is done, so at most `max_size` commands are in
//! flight, although each connection is a multiplexed one that could carry many at once.
//!
//! So the store takes a connection from the pool, clones its handle and gives the connection
//! back at once: requests share connections and pipeline on them, and the pool bounds the
//! number of connections, not of requests. The manager skips the health check for a
//! connection that completed a command within its trust window (the store's `trust_window`
//! setting, 1 s by default) with no failure in the pool since. A connection whose command
//! failed at the connection level is discarded at its next checkout, and every failure makes
//! every other connection prove itself again (the `PING`), so a Redis restart costs the
//! requests in flight on the old connections, and those handed a trusted connection before the
//! first of them fails.
//!
//! A cluster connection is never checked: redis-rs's cluster connection follows `MOVED` (and
//! `ASK`, one command at a time: see [`batch`](crate::backend::batch)), reconnects to a node that went
//! away and retries, so a check would only cost a round trip to every primary. One that failed
//! all the same is replaced at its next checkout.
//!
//! Behind Sentinel, the check is `ROLE` instead of `PING` (a demoted primary still answers a
//! `PING`), and a connection to a server the sentinels no longer name as primary is replaced
//! at its next checkout (see [`sentinel`](crate::backend::sentinel)).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ::metrics::SharedString;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::{
    AsyncConnectionConfig, Client, ConnectionInfo, ErrorKind, IntoConnectionInfo, RedisError,
    RedisResult, Value,
    aio::PubSub,
    cluster::{ClusterClient, ClusterClientBuilder},
    sentinel::SentinelNodeConnectionInfo,
};

use crate::{
    StoreError, Topology,
    backend::connection::{Connection, Link},
    backend::sentinel::{self, Sentinels},
    session::clock::millis,
    telemetry::instruments,
};

/// The oldest Redis the store works with: the users' index reads with `ZRANGE ... BYSCORE REV`
/// and `location` asks `CLIENT INFO`, both new in 6.2.
pub const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// How long the version check of a manager's first connection may take before it is given up.
const VERSION_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The trust window of a manager no store has set one on yet: the store's default.
const DEFAULT_TRUST_WINDOW: Duration = Duration::from_secs(1);

/// A deadpool pool of Redis connections managed by [`Manager`].
pub type Pool = managed::Pool<Manager>;

/// Creates Redis connections, to one server, a cluster or the primary Sentinel names, and decides when one must prove
/// its health before reuse.
#[derive(Debug)]
pub struct Manager {
    source: Source,
    /// Counts connection failures; a connection proven before the latest one is checked again.
    failures: Arc<AtomicU64>,
    /// The origin of the millisecond clock that connections' health keeps.
    started: Instant,
    /// Milliseconds after a connection's last answered command during which it is handed out
    /// again without a health check.
    trust_window: u64,
    /// The `store` label of the health checks it counts.
    metrics_label: SharedString,
    /// The servers a subscriber may listen on (the server, or the cluster's nodes we were
    /// given); behind Sentinel, the primary is asked of the sentinels instead.
    listen_to: Vec<ConnectionInfo>,
    /// Whether its first connection asked for the server's version.
    version_checked: AtomicBool,
}

/// Where connections come from.
enum Source {
    Node(deadpool_redis::Manager),
    Cluster(ClusterClient),
    Sentinel(Sentinels),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node(manager) => f.debug_tuple("Node").field(manager).finish(),
            Self::Cluster(_) => f.write_str("Cluster"),
            Self::Sentinel(sentinels) => f.debug_tuple("Sentinel").field(sentinels).finish(),
        }
    }
}

impl Manager {
    /// A manager for the Redis at `params` (a URL such as `redis://127.0.0.1:6379`).
    ///
    /// Its connections have no timeouts of their own (redis-rs would otherwise cut every
    /// command at 500 ms and every connect at 1 s): the store's timeouts govern.
    ///
    /// With the `tls` feature (on by default), `rediss://` URLs connect through rustls, checking
    /// the server against the system's root certificates; for a private CA, pass the
    /// `ConnectionInfo` of a `redis::Client::build_with_tls`. The first manager installs ring
    /// as rustls's process-wide crypto provider, unless the application installed one before.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] when `params` cannot be turned into connection settings.
    pub fn new<T: IntoConnectionInfo>(params: T) -> Result<Self, StoreError> {
        install_crypto_provider();
        let info = params
            .into_connection_info()
            .map_err(StoreError::InvalidUrl)?;
        let inner = deadpool_redis::Manager::new_with_config(info.clone(), unbounded())
            .map_err(StoreError::InvalidUrl)?;
        let mut manager = Self::from(inner);
        manager.listen_to = vec![info];
        Ok(manager)
    }

    /// A manager for the Redis Cluster that `nodes` belong to (some or all of its nodes'
    /// URLs: the rest are found from them).
    ///
    /// As with [`new`](Self::new), its connections have no response timeout of their own, and
    /// `rediss://` URLs connect through rustls.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] when the nodes cannot be turned into connection settings.
    pub fn cluster<T: IntoConnectionInfo>(
        nodes: impl IntoIterator<Item = T>,
    ) -> Result<Self, StoreError> {
        install_crypto_provider();
        let nodes = nodes
            .into_iter()
            .map(IntoConnectionInfo::into_connection_info)
            .collect::<RedisResult<Vec<_>>>()
            .map_err(StoreError::InvalidUrl)?;
        let client = ClusterClientBuilder::new(nodes.clone())
            .build()
            .map_err(StoreError::InvalidUrl)?;
        let mut manager = Self::from(client);
        manager.listen_to = nodes;
        Ok(manager)
    }

    /// A manager for the primary that the Redis Sentinels at `sentinels` name for
    /// `master_name`, followed through failovers.
    ///
    /// Its connections have no timeouts of their own, as with [`new`](Self::new).
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] when the sentinels' addresses cannot be turned into
    /// connection settings.
    pub fn sentinel<T: IntoConnectionInfo>(
        sentinels: impl IntoIterator<Item = T>,
        master_name: &str,
    ) -> Result<Self, StoreError> {
        Self::sentinel_with(
            sentinels,
            master_name,
            SentinelNodeConnectionInfo::default(),
        )
    }

    /// A manager like [`sentinel`](Self::sentinel)'s that connects to the primary with
    /// `primary`: its password and user, or TLS. The sentinels' own credentials go in their
    /// URLs.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] when the sentinels' addresses cannot be turned into
    /// connection settings.
    pub fn sentinel_with<T: IntoConnectionInfo>(
        sentinels: impl IntoIterator<Item = T>,
        master_name: &str,
        primary: SentinelNodeConnectionInfo,
    ) -> Result<Self, StoreError> {
        install_crypto_provider();
        let sentinels =
            Sentinels::new(sentinels, master_name, primary).map_err(StoreError::InvalidUrl)?;
        Ok(Self::with_source(Source::Sentinel(sentinels)))
    }

    fn with_source(source: Source) -> Self {
        Self {
            source,
            failures: Arc::default(),
            started: Instant::now(),
            trust_window: millis(DEFAULT_TRUST_WINDOW),
            listen_to: Vec::new(),
            metrics_label: SharedString::const_str("session:"),
            version_checked: AtomicBool::new(false),
        }
    }

    /// Sets how long after a command it completed a connection is handed out again without a
    /// health check (1 s by default). A store built on a manager or URL sets its own
    /// `trust_window` setting here; for a pool of your own, set it before building the pool.
    #[must_use]
    pub fn trust_window(mut self, window: Duration) -> Self {
        self.trust_window = millis(window);
        self
    }

    /// Sets the `store` label of the health checks it counts (`"session:"`, the default key
    /// prefix, unless set). A store
    /// built on a manager or URL sets its own `metrics_label` here.
    #[must_use]
    pub fn metrics_label(mut self, label: impl Into<String>) -> Self {
        self.metrics_label = SharedString::from(label.into());
        self
    }

    /// Counts a health check it sent, and how it went.
    fn checked<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        instruments::health_check(&self.metrics_label, result.is_ok());
        result
    }

    /// A pub/sub connection for a subscriber: to the server, to one of the cluster's nodes
    /// (the `attempt`-th, round the list), or to the primary the sentinels name now.
    pub(crate) async fn pubsub(&self, attempt: usize) -> RedisResult<PubSub> {
        let client = match &self.source {
            Source::Sentinel(sentinels) => sentinels.primary_client().await?,
            _ => {
                let Some(info) = self.listen_to.get(attempt % self.listen_to.len().max(1)) else {
                    return Err(RedisError::from((
                        ErrorKind::InvalidClientConfig,
                        "a store built on a manager of its own has no address to subscribe at",
                    )));
                };
                Client::open(info.clone())?
            }
        };
        client.get_async_pubsub().await
    }

    /// How many nodes a subscriber must each listen to for keyspace notifications, to hear of
    /// every expired session: every node a cluster store was given (each primary expires its
    /// own keys), as [`pubsub`](Self::pubsub) numbers them; none elsewhere, where the one
    /// server `pubsub` reaches expires them all.
    pub(crate) fn expiring_nodes(&self) -> usize {
        match self.source {
            Source::Cluster(_) => self.listen_to.len(),
            Source::Node(_) | Source::Sentinel(_) => 0,
        }
    }

    /// The kind of deployment its connections go to.
    pub(crate) fn topology(&self) -> Topology {
        match self.source {
            Source::Node(_) => Topology::Single,
            Source::Cluster(_) => Topology::Cluster,
            Source::Sentinel(_) => Topology::Sentinel,
        }
    }
}

fn install_crypto_provider() {
    #[cfg(feature = "tls")]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Wraps a deadpool-redis manager, e.g. one made with
/// `deadpool_redis::Manager::new_with_config` for connection-level settings. Give its
/// `AsyncConnectionConfig` no response timeout, or one above the store's command timeout.
/// Unlike [`Manager::new`], this installs no rustls crypto provider: for `rediss://`, install
/// one first when the application's dependencies enable more than one.
impl From<deadpool_redis::Manager> for Manager {
    fn from(inner: deadpool_redis::Manager) -> Self {
        Self::with_source(Source::Node(inner))
    }
}

/// Wraps a redis-rs cluster client, for settings [`Manager::cluster`] does not make (a private
/// CA, retries). Give it no response timeout, or one above the store's command timeout. Unlike
/// [`Manager::cluster`], this installs no rustls crypto provider.
impl From<ClusterClient> for Manager {
    fn from(client: ClusterClient) -> Self {
        Self::with_source(Source::Cluster(client))
    }
}

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = RedisError;

    // Creating and checking connections are rare, and their futures large (a cluster
    // client's connect is several kilobytes): on the heap, they leave the future of every
    // checkout, and so of every store operation, small.

    async fn create(&self) -> Result<Connection, RedisError> {
        Box::pin(self.connect()).await
    }

    async fn recycle(&self, conn: &mut Connection, metrics: &Metrics) -> RecycleResult<RedisError> {
        if conn.health.is_broken() {
            return Err(RecycleError::message("the connection failed"));
        }
        if let (Source::Sentinel(sentinels), Some(server)) = (&self.source, &conn.server)
            && !sentinels.is_current(server)
        {
            return Err(RecycleError::message("the sentinels named another primary"));
        }
        if conn.health.is_trusted(self.trust_window) {
            return Ok(());
        }
        Box::pin(self.check(conn, metrics)).await
    }
}

impl Manager {
    /// A new connection of its source's kind.
    async fn connect(&self) -> Result<Connection, RedisError> {
        let (mut link, server) = match &self.source {
            Source::Node(manager) => (Link::Node(managed::Manager::create(manager).await?), None),
            Source::Cluster(client) => (Link::Cluster(client.get_async_connection().await?), None),
            Source::Sentinel(sentinels) => {
                let (connection, address) = sentinels.connect(&unbounded()).await?;
                (Link::Node(connection), Some(address))
            }
        };
        if !self.version_checked.swap(true, Ordering::AcqRel) {
            check_version(&mut link).await;
        }
        Ok(Connection::new(
            link,
            server,
            Arc::clone(&self.failures),
            self.started,
        ))
    }

    /// Makes a connection prove itself: `UNWATCH` + `PING` on a node, `ROLE` behind Sentinel
    /// (a demoted primary still answers a `PING`); a cluster connection needs no proof.
    async fn check(&self, conn: &mut Connection, metrics: &Metrics) -> RecycleResult<RedisError> {
        match (&self.source, &mut conn.link) {
            (Source::Node(manager), Link::Node(node)) => {
                self.checked(managed::Manager::recycle(manager, node, metrics).await)?;
            }
            (Source::Sentinel(_), Link::Node(node)) => {
                let role: Value = self.checked(redis::cmd("ROLE").query_async(node).await)?;
                if !sentinel::is_primary(&role) {
                    return Err(RecycleError::message("the server is no longer a primary"));
                }
            }
            _ => return Ok(()),
        }
        conn.health.prove();
        Ok(())
    }
}

/// Asks the server behind `link` for its version (`INFO server`; on a cluster, every primary's)
/// and warns when one is older than [`MIN_REDIS_VERSION`]. Once per manager, on its first
/// connection. Advisory: a server that does not answer in time, or a user whose ACL lacks
/// `INFO`, only goes unchecked.
async fn check_version(link: &mut Link) {
    let mut info = redis::cmd("INFO");
    info.arg("server");
    let versions = match tokio::time::timeout(VERSION_CHECK_TIMEOUT, info.query_async(link)).await {
        Ok(Ok(info)) => redis_versions(&info),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "the Redis version could not be checked");
            return;
        }
        Err(_) => {
            tracing::debug!("the Redis version could not be checked in time");
            return;
        }
    };
    for version in versions {
        match parse_version(&version) {
            Some(found) if found < MIN_REDIS_VERSION => tracing::warn!(
                redis_version = %version,
                "Redis {version} is older than {}.{}, the oldest the session store supports: \
                 listing a user's sessions and `location` fail on it",
                MIN_REDIS_VERSION.0,
                MIN_REDIS_VERSION.1,
            ),
            _ => tracing::debug!(redis_version = %version, "Redis version checked"),
        }
    }
}

/// The `redis_version` fields of an `INFO` answer: one, or one per node of a cluster.
fn redis_versions(info: &Value) -> Vec<String> {
    match info {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|line| line.strip_prefix("redis_version:"))
            .map(|version| version.trim().to_owned())
            .collect(),
        Value::VerbatimString { text, .. } => {
            redis_versions(&Value::BulkString(text.clone().into()))
        }
        Value::Map(nodes) => nodes
            .iter()
            .flat_map(|(_, info)| redis_versions(info))
            .collect(),
        Value::Array(nodes) => nodes.iter().flat_map(redis_versions).collect(),
        _ => Vec::new(),
    }
}

/// Major and minor of a version such as `7.0.15`.
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.').map(str::parse::<u32>);
    Some((parts.next()?.ok()?, parts.next()?.ok()?))
}

/// Connection settings without timeouts: the store's govern.
fn unbounded() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(None)
        .set_response_timeout(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_one_servers_info_or_each_nodes() {
        let info = |version: &str| {
            Value::BulkString(
                format!("# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n").into(),
            )
        };
        assert_eq!(redis_versions(&info("7.0.15")), ["7.0.15"]);
        let nodes = Value::Map(vec![
            (Value::SimpleString("a:1".into()), info("6.0.9")),
            (Value::SimpleString("b:2".into()), info("7.2.4")),
        ]);
        assert_eq!(redis_versions(&nodes), ["6.0.9", "7.2.4"]);
        assert_eq!(parse_version("6.0.9"), Some((6, 0)));
        assert!(parse_version("6.0.9") < Some(MIN_REDIS_VERSION));
        assert!(parse_version("6.2.0") >= Some(MIN_REDIS_VERSION));
        assert!(parse_version("10.0.0") >= Some(MIN_REDIS_VERSION));
        assert_eq!(parse_version("unstable"), None);
    }
}

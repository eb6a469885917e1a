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
//! number of connections, not of requests. While the connection it took last would be handed
//! out again as it is and nobody holds or waits for a pooled one, the store goes on sending on
//! it without a checkout (`Backend::connection`). The manager skips the health check for a
//! connection that completed a command within its trust window (`Manager::trust_window`, which
//! the store's `trust_window` setting sets on the pools it makes; 1 s by default) with no failure in the pool since. A connection whose command
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
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisError, RedisResult, Value,
    aio::{MultiplexedConnection, PubSub},
    cluster::{ClusterClient, ClusterClientBuilder},
    sentinel::SentinelNodeConnectionInfo,
};

use crate::{
    backend::connection::{Connection, Health, Link, Remembered},
    backend::sentinel::{self, Sentinels},
    backend::version,
    config::DEFAULT_KEY_PREFIX,
    error::StoreError,
    session::clock::millis,
    telemetry::instruments,
};

/// The trust window of a manager that was given none.
const DEFAULT_TRUST_WINDOW: Duration = Duration::from_secs(1);

/// A deadpool pool of Redis connections managed by [`Manager`].
pub type Pool = managed::Pool<Manager>;

/// The kind of Redis deployment a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// One server.
    Single,
    /// A Redis Cluster.
    Cluster,
    /// A primary and its replicas under Redis Sentinel.
    Sentinel,
}

impl Topology {
    /// `"single"`, `"cluster"` or `"sentinel"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Cluster => "cluster",
            Self::Sentinel => "sentinel",
        }
    }
}

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
            metrics_label: SharedString::const_str(DEFAULT_KEY_PREFIX),
            version_checked: AtomicBool::new(false),
        }
    }

    /// Sets how long after a command it completed a connection is handed out again without a
    /// health check (1 s by default). A store built on a manager or URL sets its own
    /// `trust_window` setting here, when it has one; for a pool of your own, set it before
    /// building the pool.
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
                        NO_ADDRESS,
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

    /// The server its connections go to (`host:port`), when one server takes them all and its
    /// address is known: the server of its URL, or the primary the sentinels named last.
    pub(crate) fn known_server(&self) -> Option<String> {
        match &self.source {
            Source::Node(_) => self.listen_to.first().map(|info| info.addr().to_string()),
            Source::Sentinel(sentinels) => sentinels.primary(),
            Source::Cluster(_) => None,
        }
    }

    /// The servers that hold sessions, for the near cache to track: the server; behind
    /// Sentinel the primary and its replicas (`ROLE`); on a cluster every node that is not
    /// failed (`CLUSTER NODES` of the first node given that answers), replicas included.
    pub(crate) async fn session_servers(&self) -> RedisResult<Vec<ConnectionInfo>> {
        match &self.source {
            Source::Node(_) => self
                .listen_to
                .first()
                .cloned()
                .map(|info| vec![info])
                .ok_or_else(|| RedisError::from((ErrorKind::InvalidClientConfig, NO_ADDRESS))),
            Source::Sentinel(sentinels) => {
                let primary = sentinels.primary_client().await?;
                let mut connection = primary.get_multiplexed_async_connection().await?;
                let role: Value = redis::cmd("ROLE").query_async(&mut connection).await?;
                let info = primary.get_connection_info().clone();
                let mut servers: Vec<_> = sentinel::replicas(&role)
                    .into_iter()
                    .map(|(host, port)| at(&info, host, port))
                    .collect();
                servers.push(info);
                Ok(servers)
            }
            Source::Cluster(_) => {
                let mut failure = None;
                for seed in &self.listen_to {
                    let asked = async {
                        let client = Client::open(seed.clone())?;
                        let mut connection = client.get_multiplexed_async_connection().await?;
                        redis::cmd("CLUSTER")
                            .arg("NODES")
                            .query_async::<String>(&mut connection)
                            .await
                    };
                    match asked.await {
                        Ok(nodes) => {
                            return Ok(live_nodes(&nodes)
                                .map(|(host, port)| at(seed, host.to_owned(), port))
                                .collect());
                        }
                        Err(err) => failure = Some(err),
                    }
                }
                Err(failure.unwrap_or_else(|| {
                    RedisError::from((ErrorKind::InvalidClientConfig, NO_ADDRESS))
                }))
            }
        }
    }

    /// How many switches of primary the sentinels announced so far (none but behind
    /// Sentinel).
    pub(crate) fn switches(&self) -> u64 {
        match &self.source {
            Source::Sentinel(sentinels) => sentinels.switches(),
            Source::Node(_) | Source::Cluster(_) => 0,
        }
    }

    /// Whether it can tell [`session_servers`](Self::session_servers): it was given addresses.
    pub(crate) fn knows_servers(&self) -> bool {
        matches!(self.source, Source::Sentinel(_)) || !self.listen_to.is_empty()
    }

    /// The addresses (`host:port`) of the servers that hold sessions as the server behind
    /// `connection` sees them now, for the near cache's link to notice a change: on a cluster
    /// its `CLUSTER NODES`; behind Sentinel (`connection` to the primary at `primary`) its
    /// `ROLE`, the primary and its replicas, or nothing once it is no primary; `None` on a
    /// single server, whose set never changes.
    pub(crate) async fn session_addresses_from(
        &self,
        connection: &mut MultiplexedConnection,
        primary: &str,
    ) -> RedisResult<Option<Vec<String>>> {
        Ok(match self.source {
            Source::Node(_) => None,
            Source::Cluster(_) => {
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(connection)
                    .await?;
                Some(
                    live_nodes(&nodes)
                        .map(|(host, port)| format!("{host}:{port}"))
                        .collect(),
                )
            }
            Source::Sentinel(_) => {
                let role: Value = redis::cmd("ROLE").query_async(connection).await?;
                if !sentinel::is_primary(&role) {
                    return Ok(Some(Vec::new()));
                }
                let mut addresses: Vec<_> = sentinel::replicas(&role)
                    .into_iter()
                    .map(|(host, port)| format!("{host}:{port}"))
                    .collect();
                addresses.push(primary.to_owned());
                Some(addresses)
            }
        })
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

/// Why a store on a manager of its own cannot track or subscribe.
const NO_ADDRESS: &str = "a store built on a manager of its own has no address to connect to";

/// `info` for the server at `host:port` instead: the same credentials and TLS settings.
fn at(info: &ConnectionInfo, host: String, port: u16) -> ConnectionInfo {
    let addr = match info.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    info.clone().set_addr(addr)
}

/// The `host` and `port` of the nodes in a `CLUSTER NODES` reply that are not failed (nor
/// joining, nor without an address).
fn live_nodes(nodes: &str) -> impl Iterator<Item = (&str, u16)> {
    nodes.lines().filter_map(|line| {
        let mut fields = line.split(' ');
        let address = fields.nth(1)?;
        let flags = fields.next()?;
        if flags
            .split(',')
            .any(|flag| matches!(flag, "fail" | "handshake" | "noaddr"))
        {
            return None;
        }
        let address = address.split(['@', ',']).next()?;
        let (host, port) = address.rsplit_once(':')?;
        Some((host, port.parse().ok()?))
    })
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
        if let Some(why) = self.unfit(&conn.health, conn.server.as_deref()) {
            return Err(RecycleError::message(why));
        }
        if conn.health.is_trusted(self.trust_window) {
            return Ok(());
        }
        Box::pin(self.check(conn, metrics)).await
    }

    fn detach(&self, conn: &mut Connection) {
        conn.leave_pool();
    }
}

impl Manager {
    /// Why a connection must be replaced, if it must: it failed, or behind Sentinel its server
    /// is no longer the primary.
    fn unfit(&self, health: &Health, server: Option<&str>) -> Option<&'static str> {
        if health.is_broken() {
            return Some("the connection failed");
        }
        match (&self.source, server) {
            (Source::Sentinel(sentinels), Some(server)) if !sentinels.is_current(server) => {
                Some("the sentinels named another primary")
            }
            _ => None,
        }
    }

    /// Whether the pool would hand `conn` out again as it is: still in the pool, fit, and
    /// trusted (no check).
    pub(crate) fn trusts(&self, conn: &Remembered) -> bool {
        conn.is_pooled()
            && self.unfit(conn.health(), conn.server()).is_none()
            && conn.health().is_trusted(self.trust_window)
    }

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
            version::check(&mut link).await;
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

/// Connection settings without timeouts: the store's govern.
fn unbounded() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(None)
        .set_response_timeout(None)
}

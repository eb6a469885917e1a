//! Which Redis the demo keeps sessions in: one server, a cluster, or a primary behind
//! Sentinel; given on the command line, or started privately by the launcher.

use std::{process::Command, time::Duration};

use anyhow::{Context as _, bail};
use local_redis::{RedisCluster, RedisSentinels, RedisServer};
use redis::{RedisConnectionInfo, sentinel::SentinelNodeConnectionInfo};
use session_store::{Manager, RedisSessionStore, RedisSessionStoreBuilder};

use crate::cli::{CommonArgs, TopologyArg};

/// How long a write waits for its replicas, when it waits for any.
const REPLICA_WAIT: Duration = Duration::from_millis(500);

/// Where the sessions are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RedisTarget {
    /// One server, by URL.
    Server(String),
    /// A cluster, by the URLs of some of its nodes.
    Cluster(Vec<String>),
    /// The primary that these sentinels name for `master`.
    Sentinel {
        /// The sentinels' URLs.
        sentinels: Vec<String>,
        /// The master name.
        master: String,
        /// The primary's password, when it needs one.
        password: Option<String>,
    },
}

impl RedisTarget {
    /// The Redis the command line names, if it names one.
    ///
    /// # Errors
    /// When it names more than one.
    pub(crate) fn from_args(args: &CommonArgs) -> anyhow::Result<Option<Self>> {
        let given = [
            args.redis_url.clone().map(Self::Server),
            (!args.redis_cluster.is_empty()).then(|| Self::Cluster(urls(&args.redis_cluster))),
            (!args.redis_sentinel.is_empty()).then(|| Self::Sentinel {
                sentinels: urls(&args.redis_sentinel),
                master: args.sentinel_master.clone(),
                password: args.sentinel_password.clone(),
            }),
        ];
        let mut given = given.into_iter().flatten();
        let target = given.next();
        if given.next().is_some() {
            bail!("give one of --redis-url, --redis-cluster and --redis-sentinel, not several");
        }
        Ok(target)
    }

    /// A store from `builder` on this Redis.
    ///
    /// # Errors
    /// When its addresses cannot be used.
    pub(crate) fn build(
        &self,
        builder: RedisSessionStoreBuilder,
    ) -> anyhow::Result<RedisSessionStore> {
        let store = match self {
            Self::Server(url) => builder.build_with_url(url),
            Self::Cluster(nodes) => Manager::cluster(nodes.iter().map(String::as_str))
                .and_then(|manager| builder.build_with_manager(manager)),
            Self::Sentinel {
                sentinels,
                master,
                password,
            } => {
                let mut info = RedisConnectionInfo::default();
                if let Some(password) = password {
                    info = info.set_password(password);
                }
                let primary = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
                Manager::sentinel_with(sentinels.iter().map(String::as_str), master, primary)
                    .and_then(|manager| builder.build_with_manager(manager))
            }
        };
        store.with_context(|| format!("cannot use {}", self.describe()))
    }

    /// `builder` with writes waiting for `replicas` replicas, when that is more than none.
    pub(crate) fn with_replica_acks(
        builder: RedisSessionStoreBuilder,
        replicas: u32,
    ) -> RedisSessionStoreBuilder {
        if replicas == 0 {
            builder
        } else {
            builder.min_replica_acks(replicas, REPLICA_WAIT)
        }
    }

    /// How many replicas a write waits for unless told otherwise: one where there are
    /// replicas to take over (a cluster, Sentinel), so that a failover loses no login.
    pub(crate) fn default_replica_acks(&self) -> u32 {
        match self {
            Self::Server(_) => 0,
            Self::Cluster(_) | Self::Sentinel { .. } => 1,
        }
    }

    /// Hands this Redis to an instance process through its environment, and no other.
    pub(crate) fn pass_to(&self, command: &mut Command) {
        for variable in [
            "REDIS_URL",
            "REDIS_CLUSTER",
            "REDIS_SENTINEL",
            "REDIS_SENTINEL_PASSWORD",
        ] {
            command.env_remove(variable);
        }
        match self {
            Self::Server(url) => command.env("REDIS_URL", url),
            Self::Cluster(nodes) => command.env("REDIS_CLUSTER", nodes.join(",")),
            Self::Sentinel {
                sentinels,
                master,
                password,
            } => {
                if let Some(password) = password {
                    command.env("REDIS_SENTINEL_PASSWORD", password);
                }
                command
                    .env("REDIS_SENTINEL", sentinels.join(","))
                    .env("REDIS_SENTINEL_MASTER", master)
            }
        };
    }

    /// A line for people: what and where.
    pub(crate) fn describe(&self) -> String {
        let shown = |urls: &[String]| {
            urls.iter()
                .map(|url| without_password(url))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Self::Server(url) => format!("Redis at {}", without_password(url)),
            Self::Cluster(nodes) => format!("the Redis Cluster of {}", shown(nodes)),
            Self::Sentinel {
                sentinels, master, ..
            } => {
                format!(
                    "the primary the sentinels {} name `{master}`",
                    shown(sentinels)
                )
            }
        }
    }
}

/// `url` with its password, if it has one, replaced by `***`: what the banner and the logs may
/// show of it.
pub(crate) fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user = rest[..at].split_once(':').map_or("", |(user, _)| user);
    if !rest[..at].contains(':') {
        // `redis://name@host`: a user name to Redis, but some write a password there; hidden
        // as well.
        return format!("{scheme}://***{}", &rest[at..]);
    }
    format!("{scheme}://{user}:***{}", &rest[at..])
}

/// `host:port` addresses (or URLs) as URLs.
fn urls(addresses: &[String]) -> Vec<String> {
    addresses
        .iter()
        .map(|address| {
            if address.contains("://") {
                address.clone()
            } else {
                format!("redis://{address}")
            }
        })
        .collect()
}

/// A Redis the launcher started for this run; it stops with the demo.
#[derive(Debug)]
pub(crate) enum Embedded {
    /// One server.
    Server(RedisServer),
    /// Three primaries with a replica each.
    Cluster(RedisCluster),
    /// A primary, a replica and three sentinels.
    Sentinel(RedisSentinels),
}

/// Keyspace notifications of expired keys: the store announces the sessions that Redis
/// expires (idle ones) only when the server sends them.
const NOTIFY_EXPIRY: &[&str] = &["--notify-keyspace-events", "Ex"];

impl Embedded {
    /// Starts one of `topology`'s shape on free loopback ports.
    ///
    /// # Errors
    /// When `redis-server` (or `redis-cli`, for a cluster) is missing or it does not come up.
    pub(crate) fn start(topology: TopologyArg) -> anyhow::Result<Self> {
        Ok(match topology {
            TopologyArg::Single => Self::Server(RedisServer::start(NOTIFY_EXPIRY)?),
            TopologyArg::Cluster => {
                Self::Cluster(RedisCluster::builder().args(NOTIFY_EXPIRY).start()?)
            }
            TopologyArg::Sentinel => {
                Self::Sentinel(RedisSentinels::builder().args(NOTIFY_EXPIRY).start()?)
            }
        })
    }

    /// Its servers (sentinels included): their processes and folders.
    pub(crate) fn servers(&self) -> Vec<&RedisServer> {
        let (servers, sentinels) = self.servers_and_sentinels();
        servers.into_iter().chain(sentinels).collect()
    }

    /// The servers that hold sessions (primaries and replicas), and the sentinels.
    fn servers_and_sentinels(&self) -> (Vec<&RedisServer>, Vec<&RedisServer>) {
        match self {
            Self::Server(server) => (vec![server], Vec::new()),
            Self::Cluster(cluster) => (cluster.nodes().iter().collect(), Vec::new()),
            Self::Sentinel(sentinels) => (
                sentinels.servers().iter().collect(),
                sentinels.sentinels().iter().collect(),
            ),
        }
    }

    /// Makes every server refuse clients without `password`: the primaries and replicas
    /// (which then give it to their primaries) and, behind Sentinel, the sentinels, which are
    /// told it first (`auth-pass` for the servers they watch, `sentinel-pass` for each other)
    /// so that none takes the primary for down meanwhile. A sentinel left open would let any
    /// local user point the instances at a server of their own, which would then receive the
    /// password. Connections opened before the password (while a server still let anyone in)
    /// are closed after it: Redis keeps them authenticated otherwise.
    ///
    /// # Errors
    /// When a server does not take the setting.
    pub(crate) fn lock(&self, password: &str) -> anyhow::Result<()> {
        let (servers, sentinels) = self.servers_and_sentinels();
        if let Self::Sentinel(watched) = self {
            for sentinel in &sentinels {
                let mut auth_pass = redis::cmd("SENTINEL");
                auth_pass
                    .arg("SET")
                    .arg(watched.master_name())
                    .arg("auth-pass")
                    .arg(password);
                run(sentinel.port(), None, &auth_pass)?;
                let mut sentinel_pass = redis::cmd("SENTINEL");
                sentinel_pass
                    .arg("CONFIG")
                    .arg("SET")
                    .arg("sentinel-pass")
                    .arg(password);
                run(sentinel.port(), None, &sentinel_pass)?;
            }
        }
        for setting in ["masterauth", "requirepass"] {
            for server in &servers {
                let mut set = redis::cmd("CONFIG");
                set.arg("SET").arg(setting).arg(password);
                run(server.port(), None, &set)?;
            }
        }
        for sentinel in &sentinels {
            let mut set = redis::cmd("ACL");
            set.arg("SETUSER")
                .arg("default")
                .arg("resetpass")
                .arg(format!(">{password}"));
            run(sentinel.port(), None, &set)?;
        }
        for server in servers.iter().chain(&sentinels) {
            for kind in ["normal", "pubsub"] {
                let mut kill = redis::cmd("CLIENT");
                kill.arg("KILL")
                    .arg("TYPE")
                    .arg(kind)
                    .arg("SKIPME")
                    .arg("yes");
                run(server.port(), Some(password), &kill)?;
            }
        }
        Ok(())
    }

    /// Where its sessions go, with the `password` [`lock`](Self::lock) set.
    pub(crate) fn target(&self, password: &str) -> RedisTarget {
        let with_password = |url: String| url.replacen("://", &format!("://:{password}@"), 1);
        match self {
            Self::Server(server) => RedisTarget::Server(with_password(server.url())),
            Self::Cluster(cluster) => {
                RedisTarget::Cluster(cluster.urls().into_iter().map(with_password).collect())
            }
            Self::Sentinel(sentinels) => RedisTarget::Sentinel {
                sentinels: sentinels
                    .sentinel_urls()
                    .into_iter()
                    .map(with_password)
                    .collect(),
                master: sentinels.master_name().to_owned(),
                password: Some(password.to_owned()),
            },
        }
    }
}

/// Sends `command` to the server on the loopback `port`, with `password` if it needs one.
fn run(port: u16, password: Option<&str>, command: &redis::Cmd) -> anyhow::Result<()> {
    let credentials = password.map_or(String::new(), |password| format!(":{password}@"));
    let client = redis::Client::open(format!("redis://{credentials}127.0.0.1:{port}"))?;
    let mut connection = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .with_context(|| format!("cannot reach the Redis on port {port}"))?;
    command
        .query::<redis::Value>(&mut connection)
        .with_context(|| format!("the Redis on port {port} refused a setting"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            without_password("redis://app:s3cret@10.0.0.1:6379/0"),
            "redis://app:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            without_password("rediss://:s3cret@h:7001"),
            "rediss://:***@h:7001"
        );
        assert_eq!(without_password("redis://s3cret@h"), "redis://***@h");
        assert_eq!(without_password("redis://h:6379"), "redis://h:6379");
        let target = RedisTarget::Cluster(vec!["redis://:pw@a:1".to_owned()]);
        assert!(!target.describe().contains("pw"), "{}", target.describe());
    }

    #[test]
    fn addresses_become_urls() {
        assert_eq!(
            urls(&["10.0.0.1:7000".to_owned(), "rediss://h:7001".to_owned()]),
            ["redis://10.0.0.1:7000", "rediss://h:7001"]
        );
    }
}

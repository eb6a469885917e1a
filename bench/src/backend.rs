//! The Redis a measurement runs against: one server, or a cluster of primaries without
//! replicas (a replica's copying would cost CPU that one server does not pay), each process
//! started here, pinned to the load's CPU, and watched through a connection of its own.

use local_redis::{RedisCluster, RedisServer};

use crate::redis_stats::{self, CommandStats};

/// One server or a cluster, and an admin connection to each of its nodes.
pub struct Backend {
    label: String,
    urls: Vec<String>,
    cluster: bool,
    admins: Vec<redis::Connection>,
    /// What keeps the processes running: they die with it.
    _processes: Processes,
}

enum Processes {
    Server(RedisServer),
    Cluster(RedisCluster),
}

impl Processes {
    fn nodes(&self) -> &[RedisServer] {
        match self {
            Self::Server(server) => std::slice::from_ref(server),
            Self::Cluster(cluster) => cluster.nodes(),
        }
    }
}

impl Backend {
    /// One `redis-server`, on CPU `cpu` when given.
    ///
    /// # Errors
    /// When it does not start or cannot be pinned.
    pub fn server(cpu: Option<usize>) -> anyhow::Result<Self> {
        let server = RedisServer::start(&[])?;
        Self::watch("one server".to_owned(), Processes::Server(server), cpu)
    }

    /// A cluster of `primaries` primaries without replicas, every node on CPU `cpu` when
    /// given.
    ///
    /// # Errors
    /// When it does not start or cannot be pinned.
    pub fn cluster(primaries: usize, cpu: Option<usize>) -> anyhow::Result<Self> {
        let cluster = RedisCluster::builder()
            .primaries(primaries)
            .replicas(0)
            .start()?;
        let label = match primaries {
            1 => "cluster, 1 primary".to_owned(),
            n => format!("cluster, {n} primaries"),
        };
        Self::watch(label, Processes::Cluster(cluster), cpu)
    }

    fn watch(label: String, processes: Processes, cpu: Option<usize>) -> anyhow::Result<Self> {
        let nodes = processes.nodes();
        let mut admins = Vec::new();
        for node in nodes {
            if let Some(cpu) = cpu {
                crate::cpu::pin(node.pid(), cpu)?;
            }
            admins.push(redis::Client::open(node.url())?.get_connection()?);
        }
        Ok(Self {
            label,
            urls: nodes.iter().map(|node| node.url()).collect(),
            cluster: matches!(processes, Processes::Cluster(_)),
            admins,
            _processes: processes,
        })
    }

    /// What the tables call it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Its nodes' URLs.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Whether it is a cluster (clients must be cluster clients).
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Empties every node.
    ///
    /// # Errors
    /// When a node does not answer.
    pub fn flush(&mut self) -> redis::RedisResult<()> {
        self.each(|admin| redis::cmd("FLUSHALL").exec(admin))
    }

    /// Resets every node's command statistics.
    ///
    /// # Errors
    /// When a node does not answer.
    pub fn reset_stats(&mut self) -> redis::RedisResult<()> {
        self.each(redis_stats::reset)
    }

    /// The command statistics of all nodes together.
    ///
    /// # Errors
    /// When a node does not answer.
    pub fn command_stats(&mut self) -> redis::RedisResult<CommandStats> {
        let mut all = CommandStats::default();
        for admin in &mut self.admins {
            all.add(CommandStats::read(admin)?);
        }
        Ok(all)
    }

    /// The CPU seconds each node used since it started, in node order.
    ///
    /// # Errors
    /// When a node does not answer.
    pub fn cpu_seconds(&mut self) -> redis::RedisResult<Vec<f64>> {
        self.admins
            .iter_mut()
            .map(redis_stats::cpu_seconds)
            .collect()
    }

    /// The memory all nodes use together (`used_memory`).
    ///
    /// # Errors
    /// When a node does not answer.
    pub fn used_memory(&mut self) -> redis::RedisResult<u64> {
        self.admins.iter_mut().map(redis_stats::used_memory).sum()
    }

    fn each(
        &mut self,
        action: impl FnMut(&mut redis::Connection) -> redis::RedisResult<()>,
    ) -> redis::RedisResult<()> {
        self.admins.iter_mut().try_for_each(action)
    }
}

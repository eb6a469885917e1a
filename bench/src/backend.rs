//! The Redis a measurement runs against: one server, one server with a replica (for `WAIT`),
//! or a cluster of primaries without replicas (a replica's copying would cost CPU that one
//! server does not pay), each process started here, pinned to the load's CPU, and the
//! primaries watched through a connection of their own.

use std::{
    thread,
    time::{Duration, Instant},
};

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
    /// A primary and its replica.
    Replicated([RedisServer; 2]),
    Cluster(RedisCluster),
}

impl Processes {
    /// The nodes clients talk to and the figures come from: a replica is neither.
    fn nodes(&self) -> &[RedisServer] {
        match self {
            Self::Server(server) | Self::Replicated([server, _]) => std::slice::from_ref(server),
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

    /// One `redis-server` with a replica in sync, both on CPU `cpu` when given. Its figures
    /// are the primary's: the replica's CPU is left out.
    ///
    /// # Errors
    /// When either does not start, or the replica is not in sync within ten seconds.
    pub fn replicated(cpu: Option<usize>) -> anyhow::Result<Self> {
        let primary = RedisServer::start(&[])?;
        let port = primary.port().to_string();
        let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &port])?;
        if let Some(cpu) = cpu {
            crate::cpu::pin(replica.pid(), cpu)?;
        }
        let mut admin = redis::Client::open(replica.url())?.get_connection()?;
        let started = Instant::now();
        loop {
            let info: String = redis::cmd("INFO").arg("replication").query(&mut admin)?;
            if info.contains("master_link_status:up") {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "the replica is not in sync after 10 s: {info}"
            );
            thread::sleep(Duration::from_millis(50));
        }
        let processes = Processes::Replicated([primary, replica]);
        Self::watch("one server and its replica".to_owned(), processes, cpu)
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

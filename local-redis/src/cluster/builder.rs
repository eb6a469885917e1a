//! Settings of a cluster, and starting one: six nodes, then `redis-cli --cluster create`.

use std::{ffi::OsString, time::Duration};

use super::RedisCluster;
use crate::{Error, RedisServer, ports::free_port, programs::REDIS_CLI, server::Launch};

/// Primaries, each with one replica.
const PRIMARIES: usize = 3;
const REPLICAS_PER_PRIMARY: usize = 1;

/// The settings of a cluster to start; [`RedisCluster::builder`] makes one.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClusterBuilder {
    node_timeout: Duration,
    ready_timeout: Duration,
    args: Vec<String>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self {
            node_timeout: Duration::from_millis(1000),
            ready_timeout: Duration::from_secs(30),
            args: Vec::new(),
        }
    }
}

impl ClusterBuilder {
    /// `cluster-node-timeout`: how long a node may not answer before the others count it as
    /// failing, and so about how long a failover takes (1 s by default, where Redis's own is
    /// 15 s, so that failover tests run quickly).
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// How long [`start`](Self::start) and [`RedisCluster::wait_until_ok`] wait for the
    /// cluster to be ok (30 s by default).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Extra `redis-server` arguments for every node (e.g. `["--appendonly", "yes"]`).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|&arg| arg.to_owned()).collect();
        self
    }

    /// Starts the nodes, joins them into a cluster and waits until it is ok.
    ///
    /// # Errors
    /// When `redis-server` or `redis-cli` is missing, a node does not start, `redis-cli
    /// --cluster create` fails, or the cluster is not ok within the ready timeout.
    pub fn start(self) -> Result<RedisCluster, Error> {
        let nodes = (0..PRIMARIES * (1 + REPLICAS_PER_PRIMARY))
            .map(|_| self.start_node())
            .collect::<Result<Vec<_>, _>>()?;
        create(&nodes, self.ready_timeout)?;
        let cluster = RedisCluster {
            nodes,
            ready_timeout: self.ready_timeout,
        };
        cluster.wait_until_ok()?;
        Ok(cluster)
    }

    /// One node, not yet part of a cluster: what `redis-cli --cluster add-node` would take too.
    fn start_node(&self) -> Result<RedisServer, Error> {
        RedisServer::launch(|| {
            // The cluster bus gets a free port of its own rather than Redis's port + 10000,
            // which is often beyond 65535 for the ports the system hands out.
            let bus_port = free_port()?.to_string();
            let timeout = self.node_timeout.as_millis().to_string();
            let mut args: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                &timeout,
                "--cluster-port",
                &bus_port,
                // Replicas sync at once instead of after the default 5 s wait for others.
                "--repl-diskless-sync-delay",
                "0",
            ]
            .map(str::to_owned)
            .into();
            args.extend(self.args.iter().cloned());
            Ok(Launch { config: None, args })
        })
    }
}

/// `redis-cli --cluster create` over `nodes`: assigns the slots to the first ones, makes the
/// others their replicas and waits until the nodes have met.
fn create(nodes: &[RedisServer], timeout: Duration) -> Result<(), Error> {
    let mut args: Vec<OsString> = vec!["--cluster".into(), "create".into()];
    args.extend(nodes.iter().map(|node| node.address().into()));
    args.extend(
        [
            "--cluster-replicas",
            &REPLICAS_PER_PRIMARY.to_string(),
            "--cluster-yes",
        ]
        .map(OsString::from),
    );
    let log = nodes[0].dir().join("cluster-create.log");
    REDIS_CLI.run(&args, &log, timeout).map(drop)
}

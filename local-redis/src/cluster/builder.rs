//! Settings of a cluster, and starting one: its nodes, then `redis-cli --cluster create` (or,
//! for fewer than three primaries, which it refuses, the same steps by hand).

use std::{ffi::OsString, time::Duration};

use super::{RedisCluster, node_id};
use crate::{
    Error, RedisServer, ports::free_port, probe, programs::REDIS_CLI, server::Launch, wait,
};

/// Every slot of the key space.
const SLOTS: usize = 16384;

/// The node timeout a node starts with, when the one asked for is longer. A primary reports
/// `cluster_state:ok` only one node timeout after it last saw itself in a minority, which a
/// new or restarted node always does: a cluster forms as fast as its node timeout allows. So
/// nodes start with this one, and take the one asked for once the cluster is ok.
const FORMING_NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// The settings of a cluster to start; [`RedisCluster::builder`] makes one.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClusterBuilder {
    primaries: usize,
    replicas: usize,
    node_timeout: Duration,
    pub(super) ready_timeout: Duration,
    args: Vec<String>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self {
            primaries: 3,
            replicas: 1,
            node_timeout: Duration::from_millis(5000),
            ready_timeout: Duration::from_secs(30),
            args: Vec::new(),
        }
    }
}

impl ClusterBuilder {
    /// How many primaries share the slots (3 by default), in equal ranges in node order:
    /// nodes `0..primaries` are the primaries, the replicas come after them.
    ///
    /// # Panics
    /// When `primaries` is 0.
    pub fn primaries(mut self, primaries: usize) -> Self {
        assert!(primaries > 0, "a cluster needs a primary");
        self.primaries = primaries;
        self
    }

    /// Replicas per primary (1 by default; 0 for a cluster of primaries alone, as a benchmark
    /// that compares it with a single server wants).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// `cluster-node-timeout`: how long a node may not answer before the others count it as
    /// failing, and so about how long a failover takes (5 s by default, where Redis's own is
    /// 15 s). The default is long enough that a node stalled by a busy machine (a test suite on
    /// two cores) is not failed over when nothing was killed; a test that kills a node and
    /// wants a quick failover sets 1 to 2 s here.
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
        let nodes = (0..self.primaries * (1 + self.replicas))
            .map(|_| self.start_node())
            .collect::<Result<Vec<_>, _>>()?;
        if self.primaries >= 3 {
            create(&nodes, self.replicas, self.ready_timeout)?;
        } else {
            assemble(&nodes, self.primaries, self.ready_timeout)?;
        }
        let cluster = RedisCluster {
            nodes,
            settings: self,
        };
        cluster.wait_until_ok()?;
        Ok(cluster)
    }

    /// Gives every running node of `nodes` the node timeout asked for (they start with at most
    /// [`FORMING_NODE_TIMEOUT`]).
    pub(super) fn apply_node_timeout(&self, nodes: &[RedisServer]) -> Result<(), Error> {
        let timeout = self.node_timeout.as_millis().to_string();
        for node in nodes.iter().filter(|node| node.is_running()) {
            let () = probe::query(
                node.port(),
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("cluster-node-timeout")
                    .arg(&timeout),
            )?;
        }
        Ok(())
    }

    /// One node, not yet part of a cluster: what `redis-cli --cluster add-node` takes too.
    pub(super) fn start_node(&self) -> Result<RedisServer, Error> {
        RedisServer::launch(|| {
            // The cluster bus gets a free port of its own rather than Redis's port + 10000,
            // which is often beyond 65535 for the ports the system hands out.
            let bus_port = free_port()?.to_string();
            let timeout = self
                .node_timeout
                .min(FORMING_NODE_TIMEOUT)
                .as_millis()
                .to_string();
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
/// others their replicas (`replicas` each) and waits until the nodes have met.
fn create(nodes: &[RedisServer], replicas: usize, timeout: Duration) -> Result<(), Error> {
    let mut args: Vec<OsString> = vec!["--cluster".into(), "create".into()];
    args.extend(nodes.iter().map(|node| node.address().into()));
    args.extend(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"].map(OsString::from));
    let log = nodes[0].dir().join("cluster-create.log");
    REDIS_CLI.run(&args, &log, timeout).map(drop)
}

/// What `redis-cli --cluster create` does, by hand, for the one or two primaries it refuses
/// to make a cluster of: each of the first `primaries` nodes takes an equal range of slots
/// and a config epoch of its own (so that no two claim a slot with the same epoch), every node
/// meets the first, and once all know each other the rest replicate the primaries in turn.
fn assemble(nodes: &[RedisServer], primaries: usize, timeout: Duration) -> Result<(), Error> {
    for (index, node) in nodes[..primaries].iter().enumerate() {
        let first = (SLOTS * index / primaries).to_string();
        let last = (SLOTS * (index + 1) / primaries - 1).to_string();
        cluster(node, &["ADDSLOTSRANGE", &first, &last])?;
        cluster(node, &["SET-CONFIG-EPOCH", &(index + 1).to_string()])?;
    }
    // Our nodes' bus ports are no fixed offset from their ports: MEET must be told.
    let (_, bus_port): (String, String) = probe::query(
        nodes[0].port(),
        redis::cmd("CONFIG").arg("GET").arg("cluster-port"),
    )?;
    let first = nodes[0].port().to_string();
    for node in &nodes[1..] {
        cluster(node, &["MEET", "127.0.0.1", &first, &bus_port])?;
    }
    wait::until("the nodes to meet", timeout, || {
        let everyone = nodes.len().to_string();
        for node in nodes {
            let info = probe::cluster_info(node.port())?;
            wait::ensure(info.is("cluster_known_nodes", &everyone), || {
                format!("{} knows fewer nodes", node.address())
            })?;
        }
        Ok(())
    })?;
    for (index, replica) in nodes.iter().enumerate().skip(primaries) {
        let primary = node_id(nodes[index % primaries].port())?;
        cluster(replica, &["REPLICATE", &primary])?;
    }
    Ok(())
}

/// `CLUSTER` with `args`, to `node`.
fn cluster(node: &RedisServer, args: &[&str]) -> Result<(), Error> {
    Ok(probe::query(node.port(), redis::cmd("CLUSTER").arg(args))?)
}

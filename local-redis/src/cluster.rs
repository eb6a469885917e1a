//! A Redis Cluster (three primaries with one replica each unless the builder says otherwise):
//! `redis-server` processes on free loopback ports, joined by `redis-cli --cluster create`,
//! all killed when dropped; it can grow by a primary and move slots between primaries.

mod builder;
mod health;
mod migration;
mod resize;
mod view;

use std::ops::RangeInclusive;

use self::view::{View, key_slot, node_id, view};
pub use self::{builder::ClusterBuilder, migration::SlotMigration};
use crate::{Error, RedisServer, wait};

/// A running cluster: three primaries with one replica each, unless its
/// [builder](Self::builder) asked for other numbers.
///
/// Nodes are named by their index in [`nodes`](Self::nodes), which never changes: a node keeps
/// its index, port and folder across [`stop`](Self::stop) and [`restart`](Self::restart),
/// whatever its role becomes, and a node [added](Self::add_primary) takes the next index. Which
/// node is primary for what is asked of the cluster ([`primary_for_key`](Self::primary_for_key),
/// [`primaries`](Self::primaries)), since a failover or a [reshard](Self::reshard) changes it.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// What it was started with, which a node added later gets too.
    settings: ClusterBuilder,
}

impl RedisCluster {
    /// Starts a cluster with the default settings and waits until it is ok.
    ///
    /// # Errors
    /// When `redis-server` or `redis-cli` is missing, or the cluster does not come up.
    pub fn start() -> Result<Self, Error> {
        Self::builder().start()
    }

    /// A builder, for a shorter or longer node timeout and extra arguments.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Every node, primaries and replicas alike (six, by default).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Node `index`.
    ///
    /// # Panics
    /// When there is no such node.
    pub fn node(&self, index: usize) -> &RedisServer {
        &self.nodes[index]
    }

    /// `redis://127.0.0.1:{port}` of every node: the initial nodes of a cluster client
    /// (`redis::cluster::ClusterClient::new`, deadpool-redis's `cluster::Config::from_urls`).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The node that is primary for `key`'s slot (`CLUSTER KEYSLOT`), as the first running
    /// node sees it. Right after a failover the nodes may not agree yet:
    /// [`wait_until_ok`](Self::wait_until_ok) first.
    ///
    /// # Errors
    /// When no node runs or the one asked does not answer.
    pub fn primary_for_key(&self, key: impl AsRef<[u8]>) -> Result<usize, Error> {
        let slot = key_slot(self.any_running()?.port(), key.as_ref())?;
        self.primary_for_slot(slot)
    }

    /// The node that is primary for `slot` (0 to 16383), as the first running node sees it.
    ///
    /// # Errors
    /// When no node runs, the one asked does not answer, or no node serves the slot.
    pub fn primary_for_slot(&self, slot: u16) -> Result<usize, Error> {
        let view = self.view()?;
        let range = view
            .slots
            .iter()
            .find(|range| range.holds(slot))
            .ok_or_else(|| Error::Topology(format!("no node serves slot {slot}")))?;
        self.index_of(range.primary)
    }

    /// The slot ranges node `index` serves as a primary, in slot order, as the first running
    /// node sees it (a slot mid-migration counts as its old owner's until it is moved).
    ///
    /// # Errors
    /// When no node runs or the one asked does not answer.
    ///
    /// # Panics
    /// When there is no such node.
    pub fn slots_of(&self, index: usize) -> Result<Vec<RangeInclusive<u16>>, Error> {
        let port = self.node(index).port();
        let view = self.view()?;
        let ranges = view.slots.iter().filter(|range| range.primary == port);
        Ok(ranges.map(|range| range.first..=range.last).collect())
    }

    /// The nodes that serve slots now, in slot order, as the first running node sees it.
    ///
    /// # Errors
    /// When no node runs or the one asked does not answer.
    pub fn primaries(&self) -> Result<Vec<usize>, Error> {
        let mut primaries = Vec::new();
        for range in self.view()?.slots {
            let primary = self.index_of(range.primary)?;
            if !primaries.contains(&primary) {
                primaries.push(primary);
            }
        }
        Ok(primaries)
    }

    /// The replicas of `primary`, as the first running node sees it, leaving out those it
    /// counts as failing.
    ///
    /// # Errors
    /// When no node runs or the one asked does not answer.
    ///
    /// # Panics
    /// When there is no such node.
    pub fn replicas_of(&self, primary: usize) -> Result<Vec<usize>, Error> {
        let port = self.node(primary).port();
        let view = self.view()?;
        let replicas = view.replicas.iter().filter(|&&(_, of)| of == port);
        replicas
            .map(|&(replica, _)| self.index_of(replica))
            .collect()
    }

    /// Kills node `index`, as a crash would. Its replica takes over after the node timeout
    /// when it was a primary; [`wait_until_ok`](Self::wait_until_ok) waits for that.
    ///
    /// # Panics
    /// When there is no such node.
    pub fn stop(&mut self, index: usize) {
        self.nodes[index].stop();
    }

    /// Starts node `index` again on its port, in its folder: its `nodes.conf` keeps its
    /// identity, so it rejoins as the node it was (an old primary whose replica took over comes
    /// back as that replica's replica). Returns once it answers; the cluster may need a moment
    /// more to take it back ([`wait_until_ok`](Self::wait_until_ok), which also gives it back
    /// the node timeout asked for: like every node, it starts with a short one to rejoin
    /// quickly).
    ///
    /// # Errors
    /// When it does not answer within ten seconds.
    ///
    /// # Panics
    /// When there is no such node.
    pub fn restart(&mut self, index: usize) -> Result<(), Error> {
        self.nodes[index].restart()
    }

    /// Waits until the cluster is ok as every running node sees it: `cluster_state:ok` with
    /// every slot served by a running primary the nodes agree on, and every running replica in
    /// sync. After a primary stops, that means its replica was promoted; after an old primary
    /// restarts, that it came back as a replica.
    ///
    /// # Errors
    /// When that does not happen within the builder's `ready_timeout` (30 s by default);
    /// the error says which condition was still missing. A primary [added](Self::add_primary)
    /// and not yet given slots fails it.
    pub fn wait_until_ok(&self) -> Result<(), Error> {
        wait::until("the cluster to be ok", self.settings.ready_timeout, || {
            health::check(&self.nodes, health::Empty::Refused)
        })?;
        self.settings.apply_node_timeout(&self.nodes)
    }

    fn view(&self) -> Result<View, Error> {
        Ok(view(self.any_running()?.port())?)
    }

    fn any_running(&self) -> Result<&RedisServer, Error> {
        self.nodes
            .iter()
            .find(|node| node.is_running())
            .ok_or_else(|| Error::Topology("no cluster node runs".to_owned()))
    }

    fn index_of(&self, port: u16) -> Result<usize, Error> {
        self.nodes
            .iter()
            .position(|node| node.port() == port)
            .ok_or_else(|| Error::Topology(format!("127.0.0.1:{port} is none of our nodes")))
    }
}

//! Growing a running cluster and moving slots between its primaries with the operator's tool:
//! `redis-cli --cluster add-node` and `redis-cli --cluster reshard`.

use std::{ffi::OsString, time::Duration};

use super::{
    RedisCluster,
    health::{self, Empty},
    node_id,
};
use crate::{Error, programs::REDIS_CLI, wait};

/// How long a reshard may take. It moves every key of every slot it moves, ten keys per
/// `MIGRATE`, so its time grows with the data; this only guards against a hang.
const RESHARD_TIMEOUT: Duration = Duration::from_secs(300);

impl RedisCluster {
    /// Starts a node with the cluster's settings and joins it as a primary without slots
    /// (`redis-cli --cluster add-node`); returns its index once every node knows it.
    ///
    /// It serves nothing until a [`reshard`](Self::reshard) or a
    /// [`migration`](Self::begin_migration) gives it slots, and until then
    /// [`wait_until_ok`](Self::wait_until_ok) fails for it.
    ///
    /// # Errors
    /// When the node does not start, `redis-cli` fails, or the other nodes do not all know
    /// the new one within the ready timeout.
    pub fn add_primary(&mut self) -> Result<usize, Error> {
        let node = self.settings.start_node()?;
        let args = [
            "--cluster",
            "add-node",
            &node.address(),
            &self.any_running()?.address(),
        ];
        let log = node.dir().join("add-node.log");
        REDIS_CLI.run(&os(&args), &log, self.settings.ready_timeout)?;
        self.nodes.push(node);
        self.wait_until_settled()?;
        Ok(self.nodes.len() - 1)
    }

    /// Starts a node with the cluster's settings and joins it as a replica of `primary`
    /// (`redis-cli --cluster add-node --cluster-slave`); returns its index once it is in sync
    /// and every node knows it. A primary [added](Self::add_primary) for a cluster whose
    /// writes wait for a replica (`WAIT 1`) needs one.
    ///
    /// # Errors
    /// When the node does not start, `redis-cli` fails, or the node is not in sync and known
    /// to all within the ready timeout.
    ///
    /// # Panics
    /// When there is no such node.
    pub fn add_replica(&mut self, primary: usize) -> Result<usize, Error> {
        let node = self.settings.start_node()?;
        let args = [
            "--cluster",
            "add-node",
            &node.address(),
            &self.node(primary).address(),
            "--cluster-slave",
            "--cluster-master-id",
            &node_id(self.node(primary).port())?,
        ];
        let log = node.dir().join("add-node.log");
        REDIS_CLI.run(&os(&args), &log, self.settings.ready_timeout)?;
        self.nodes.push(node);
        self.wait_until_settled()?;
        Ok(self.nodes.len() - 1)
    }

    /// Moves `slots` slots, with their keys, from the primaries `from` to the primary `to`,
    /// the way an operator would: `redis-cli --cluster reshard --cluster-yes`, which takes
    /// slots from each of `from` in proportion to how many it serves, and moves them one at a
    /// time (the slot marked importing on `to` and migrating on its owner, its keys moved ten
    /// per `MIGRATE`, then the slot given to `to` on every primary). Meanwhile a client that
    /// asks the old owner for a key it no longer has is sent on with `ASK`. Returns once every
    /// node agrees on the new owners.
    ///
    /// # Errors
    /// When the nodes do not agree on the slots before or after (within the ready timeout),
    /// or `redis-cli` fails (it refuses a cluster with a slot left open) or takes more than
    /// five minutes.
    ///
    /// # Panics
    /// When there is no such node.
    pub fn reshard(&self, from: &[usize], to: usize, slots: u16) -> Result<(), Error> {
        self.wait_until_settled()?;
        let sources = from
            .iter()
            .map(|&node| node_id(self.node(node).port()))
            .collect::<Result<Vec<_>, _>>()?
            .join(",");
        let args = [
            "--cluster",
            "reshard",
            &self.node(to).address(),
            "--cluster-from",
            &sources,
            "--cluster-to",
            &node_id(self.node(to).port())?,
            "--cluster-slots",
            &slots.to_string(),
            "--cluster-yes",
        ];
        let log = self.node(to).dir().join("reshard.log");
        REDIS_CLI.run(&os(&args), &log, RESHARD_TIMEOUT)?;
        self.wait_until_settled()
    }

    /// Waits until the nodes agree on the slots, as [`wait_until_ok`](Self::wait_until_ok)
    /// does, with primaries that serve no slots let through.
    pub(super) fn wait_until_settled(&self) -> Result<(), Error> {
        wait::until("the cluster to settle", self.settings.ready_timeout, || {
            health::check(&self.nodes, Empty::Allowed)
        })?;
        self.settings.apply_node_timeout(&self.nodes)
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

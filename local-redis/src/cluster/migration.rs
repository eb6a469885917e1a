//! Slots held mid-migration: the steps of a reshard taken one at a time, so that a test can
//! look at the cluster between them, where a reshard of slots that hold many keys spends most
//! of its time.

use std::collections::{HashMap, hash_map::Entry};

use super::{RedisCluster, node_id};
use crate::{Error, RedisServer, probe};

/// Keys moved per `MIGRATE`, as `redis-cli --cluster reshard` moves them.
const BATCH: usize = 10;

/// How long one `MIGRATE` may take, in milliseconds.
const MIGRATE_TIMEOUT_MS: u64 = 5000;

/// Slots on their way to another primary, held open between the steps of a reshard.
///
/// [`RedisCluster::begin_migration`] marks each slot importing on the target and migrating on
/// its owner; [`move_keys`](Self::move_keys) moves some of their keys; [`finish`](Self::finish)
/// moves the rest and gives the slots to the target. In between, the owner still serves the
/// keys it has and answers `ASK` for those it has not (moved ones, and new ones), and the
/// target serves a key of such a slot only to a client that sent `ASKING` right before: what
/// clients see during a real reshard of slots holding many keys, for as long as a test likes.
///
/// Dropped unfinished, the slots stay open (and `redis-cli --cluster reshard` refuses a
/// cluster with open slots).
#[derive(Debug)]
#[must_use = "slots left mid-migration stay open"]
pub struct SlotMigration<'a> {
    cluster: &'a RedisCluster,
    to: usize,
    to_id: String,
    /// Each slot and the node it comes from.
    slots: Vec<(u16, usize)>,
}

impl RedisCluster {
    /// Starts moving `slots` to the primary `to`: each is marked importing on `to`
    /// (`CLUSTER SETSLOT slot IMPORTING`), then migrating on the primary that serves it
    /// (`MIGRATING`), the order Redis asks for. No key moves yet.
    ///
    /// # Errors
    /// When a node does not answer, or a slot is served by `to` already or by no one.
    ///
    /// # Panics
    /// When there is no such node.
    pub fn begin_migration(
        &self,
        slots: impl IntoIterator<Item = u16>,
        to: usize,
    ) -> Result<SlotMigration<'_>, Error> {
        let view = self.view()?;
        let to_id = node_id(self.node(to).port())?;
        let mut ids = HashMap::new();
        let mut migration = SlotMigration {
            cluster: self,
            to,
            to_id,
            slots: Vec::new(),
        };
        for slot in slots {
            let range = view.slots.iter().find(|range| range.holds(slot));
            let from = self.index_of(
                range
                    .ok_or_else(|| Error::Topology(format!("no node serves slot {slot}")))?
                    .primary,
            )?;
            if from == to {
                return Err(Error::Topology(format!("node {to} serves slot {slot}")));
            }
            let from_id = match ids.entry(from) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => new.insert(node_id(self.node(from).port())?),
            };
            set_slot(self.node(to), slot, &["IMPORTING", from_id])?;
            set_slot(self.node(from), slot, &["MIGRATING", &migration.to_id])?;
            migration.slots.push((slot, from));
        }
        Ok(migration)
    }
}

impl SlotMigration<'_> {
    /// The slots being moved.
    pub fn slots(&self) -> impl Iterator<Item = u16> + '_ {
        self.slots.iter().map(|&(slot, _)| slot)
    }

    /// Moves up to `per_slot` keys of each slot to the target (`CLUSTER GETKEYSINSLOT`, then
    /// `MIGRATE` ten at a time, each batch atomically); returns how many moved.
    ///
    /// # Errors
    /// When a node does not answer or refuses a `MIGRATE`.
    pub fn move_keys(&self, per_slot: usize) -> Result<usize, Error> {
        let target = self.cluster.node(self.to);
        let mut moved = 0;
        for &(slot, from) in &self.slots {
            let source = self.cluster.node(from);
            let keys: Vec<Vec<u8>> = probe::query(
                source.port(),
                redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(slot)
                    .arg(per_slot),
            )?;
            for batch in keys.chunks(BATCH) {
                migrate(source, target, batch)?;
            }
            moved += keys.len();
        }
        Ok(moved)
    }

    /// Moves every key left, then gives each slot to the target on the target, on its old
    /// owner and on every other primary, in that order (the target first, so that no node
    /// sends a client to the old owner after it has given the slot up); returns once every
    /// node agrees.
    ///
    /// # Errors
    /// When a node does not answer or refuses a step, or the nodes do not agree within the
    /// ready timeout.
    pub fn finish(self) -> Result<(), Error> {
        while self.move_keys(1000)? > 0 {}
        let others = self.cluster.primaries()?;
        for &(slot, from) in &self.slots {
            let others = others
                .iter()
                .filter(|&&node| node != from && node != self.to);
            for node in [self.to, from].iter().chain(others) {
                set_slot(self.cluster.node(*node), slot, &["NODE", &self.to_id])?;
            }
        }
        self.cluster.wait_until_settled()
    }
}

/// `CLUSTER SETSLOT slot args…` on `node`.
fn set_slot(node: &RedisServer, slot: u16, args: &[&str]) -> Result<(), Error> {
    let mut command = redis::cmd("CLUSTER");
    command.arg("SETSLOT").arg(slot).arg(args);
    Ok(probe::query(node.port(), &command)?)
}

/// `MIGRATE` of `keys` from `source` to `target`, in one step: each key is on one of the two
/// at any moment.
fn migrate(source: &RedisServer, target: &RedisServer, keys: &[Vec<u8>]) -> Result<(), Error> {
    let mut command = redis::cmd("MIGRATE");
    command
        .arg("127.0.0.1")
        .arg(target.port())
        .arg("")
        .arg(0)
        .arg(MIGRATE_TIMEOUT_MS)
        .arg("KEYS")
        .arg(keys);
    // `NOKEY` when every key went meanwhile (expired, deleted): nothing to move.
    let _: redis::Value = probe::query(source.port(), &command)?;
    Ok(())
}

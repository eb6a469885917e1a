//! When a cluster is ok: what every running node must say before its users may rely on it.

use super::view::{View, view};
use crate::{
    RedisServer, probe,
    wait::{NotYet, ensure},
};

/// Every slot of the key space.
const SLOTS: &str = "16384";

/// Checks that the cluster is ok as seen from every running node:
///
/// - `CLUSTER INFO` says `cluster_state:ok`, all 16384 slots assigned and ok, and every node
///   known (a stopped node stays known);
/// - all running nodes agree on which primary serves which slots and which replica copies
///   which primary, and each of those primaries runs: right after a primary stops, the others
///   still name it until they mark it failed and its replica is promoted, so this waits for
///   the failover itself, not just for `cluster_state:ok`;
/// - every running node either serves slots or is a replica whose link to its primary is up
///   (a restarted old primary has been turned into a replica and has synced).
///
/// A node added without slots (as resharding would) fails the last rule until it gets some,
/// unless `empty` allows it.
pub(super) fn check(nodes: &[RedisServer], empty: Empty) -> Result<(), NotYet> {
    let mut agreed: Option<(usize, View)> = None;
    for (index, node) in nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| node.is_running())
    {
        let said = |what: String| format!("node {index} ({}) {what}", node.address());
        check_info(node, nodes.len()).map_err(|reason| NotYet::Waiting(said(reason)))?;
        let view = view(node.port())?;
        if let Some(range) = view.slots.iter().find(|range| !runs(nodes, range.primary)) {
            return Err(NotYet::Waiting(said(format!(
                "still names the stopped 127.0.0.1:{} as primary of slots {}-{}",
                range.primary, range.first, range.last
            ))));
        }
        check_role(node, &view, empty).map_err(|reason| NotYet::Waiting(said(reason)))?;
        match &agreed {
            Some((first, agreed)) => ensure(*agreed == view, || {
                said(format!("sees {view:?}, node {first} sees {agreed:?}"))
            })?,
            None => agreed = Some((index, view)),
        }
    }
    Ok(())
}

/// `CLUSTER INFO` of a node: the cluster ok, every slot served, every node known.
fn check_info(node: &RedisServer, nodes: usize) -> Result<(), String> {
    let info = probe::cluster_info(node.port()).map_err(|err| err.to_string())?;
    let expected = [
        ("cluster_state", "ok"),
        ("cluster_slots_assigned", SLOTS),
        ("cluster_slots_ok", SLOTS),
        ("cluster_known_nodes", &nodes.to_string()),
    ];
    for (field, value) in expected {
        if !info.is(field, value) {
            return Err(format!(
                "says {field}:{}, not {value}",
                info.get(field).unwrap_or("nothing")
            ));
        }
    }
    Ok(())
}

/// Whether a primary without slots passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Empty {
    /// Not as ok: a restarted old primary must have become a replica, not stay an empty
    /// primary.
    Refused,
    /// Yes: a node just added, or one that gave all its slots away, serves nothing yet.
    Allowed,
}

/// A node serves slots, or is a replica in sync with its primary (or, when `empty` allows it,
/// a primary without slots).
fn check_role(node: &RedisServer, view: &View, empty: Empty) -> Result<(), String> {
    let replication = probe::info(node.port(), "replication").map_err(|err| err.to_string())?;
    match replication.get("role") {
        Some("master") if view.serves(node.port()) || empty == Empty::Allowed => Ok(()),
        Some("master") => Err("is a primary without slots".to_owned()),
        Some("slave") if replication.is("master_link_status", "up") => Ok(()),
        role => Err(format!(
            "has role {role:?}, link {:?}",
            replication.get("master_link_status")
        )),
    }
}

fn runs(nodes: &[RedisServer], port: u16) -> bool {
    nodes
        .iter()
        .any(|node| node.port() == port && node.is_running())
}

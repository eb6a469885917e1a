//! The cluster as one node sees it (`CLUSTER NODES`): which primary serves which slots, and
//! which replica copies which primary.
//!
//! `CLUSTER SLOTS` would give the slots too, but leaves out every replica whose replication
//! offset is still 0, as it is in a fresh cluster that nothing has written to yet.

use std::collections::HashMap;

use redis::{ErrorKind, RedisResult};

use crate::probe;

/// A range of slots and the port of the primary that serves it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SlotRange {
    /// Its first slot.
    pub(crate) first: u16,
    /// Its last slot (included).
    pub(crate) last: u16,
    /// The port of the primary that serves it.
    pub(crate) primary: u16,
}

impl SlotRange {
    /// Whether `slot` is in the range.
    pub(crate) fn holds(&self, slot: u16) -> bool {
        (self.first..=self.last).contains(&slot)
    }
}

/// One node's view, in a form two views can be compared in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct View {
    /// The slot ranges, in slot order.
    pub(crate) slots: Vec<SlotRange>,
    /// `(replica port, primary port)` of every replica the node does not count as failing,
    /// in port order.
    pub(crate) replicas: Vec<(u16, u16)>,
}

impl View {
    /// Whether the node on `port` serves slots.
    pub(crate) fn serves(&self, port: u16) -> bool {
        self.slots.iter().any(|range| range.primary == port)
    }
}

/// The view of the node on `port`.
pub(crate) fn view(port: u16) -> RedisResult<View> {
    let text: String = probe::query(port, redis::cmd("CLUSTER").arg("NODES"))?;
    parse(&text).ok_or_else(|| {
        (
            ErrorKind::UnexpectedReturnType,
            "an unreadable CLUSTER NODES reply",
            text,
        )
            .into()
    })
}

/// One line of `CLUSTER NODES`: `id ip:port@bus-port[,hostname] flags primary-id ping pong
/// epoch link slot-range…`.
struct Line<'a> {
    id: &'a str,
    port: u16,
    flags: Vec<&'a str>,
    primary: &'a str,
    slots: Vec<&'a str>,
}

fn parse(text: &str) -> Option<View> {
    let lines = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_line)
        .collect::<Option<Vec<_>>>()?;
    let ports: HashMap<&str, u16> = lines.iter().map(|line| (line.id, line.port)).collect();
    let mut slots = Vec::new();
    let mut replicas = Vec::new();
    for line in &lines {
        // `fail?`: this node suspects it; `fail`: the cluster agreed.
        let failing = line.flags.iter().any(|flag| flag.starts_with("fail"));
        if line.flags.contains(&"master") {
            for range in &line.slots {
                slots.extend(slot_range(range, line.port));
            }
        } else if line.flags.contains(&"slave") && !failing {
            replicas.push((line.port, *ports.get(line.primary)?));
        }
    }
    slots.sort();
    replicas.sort();
    Some(View { slots, replicas })
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    let mut fields = line.split_whitespace();
    let id = fields.next()?;
    let address = fields.next()?;
    let flags = fields.next()?.split(',').collect();
    let primary = fields.next()?;
    // ping-sent, pong-received, config-epoch, link-state.
    let slots = fields.skip(4).collect();
    let (_, port) = address.split('@').next()?.rsplit_once(':')?;
    Some(Line {
        id,
        port: port.parse().ok()?,
        flags,
        primary,
        slots,
    })
}

/// `0-5460` or `5461`; a slot being migrated (`[5461->-id]`) is still served by its owner's
/// range and is left out.
fn slot_range(range: &str, primary: u16) -> Option<SlotRange> {
    if range.starts_with('[') {
        return None;
    }
    let (first, last) = range.split_once('-').unwrap_or((range, range));
    Some(SlotRange {
        first: first.parse().ok()?,
        last: last.parse().ok()?,
        primary,
    })
}

/// The id of the node on `port` (`CLUSTER MYID`), which `CLUSTER SETSLOT` and `redis-cli
/// --cluster` name nodes by.
pub(crate) fn node_id(port: u16) -> RedisResult<String> {
    probe::query(port, redis::cmd("CLUSTER").arg("MYID"))
}

/// The slot of `key` (`CLUSTER KEYSLOT`), as the node on `port` computes it.
pub(crate) fn key_slot(port: u16, key: &[u8]) -> RedisResult<u16> {
    probe::query(port, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
5c42 127.0.0.1:47104@47204 slave d489 0 1795767672657 3 connected
d489 127.0.0.1:47102@47202 master - 0 1795767672657 3 connected 10923-16383
5889 127.0.0.1:47100@47200 myself,master - 0 1795767672000 1 connected 0-5460 [5461->-71db]
7156 127.0.0.1:47103@47203 slave,fail 71db 0 1795767672657 2 disconnected
71db 127.0.0.1:47101@47201,host.example master - 0 1795767672657 2 connected 5461 5462-10922
";

    #[test]
    fn a_view_holds_slot_ranges_and_healthy_replicas_by_port() {
        let view = parse(NODES).expect("a readable reply");
        let range = |first, last, primary| SlotRange {
            first,
            last,
            primary,
        };
        assert_eq!(
            view.slots,
            [
                range(0, 5460, 47100),
                range(5461, 5461, 47101),
                range(5462, 10922, 47101),
                range(10923, 16383, 47102),
            ]
        );
        assert_eq!(view.replicas, [(47104, 47102)]);
        assert!(view.serves(47101));
        assert!(!view.serves(47104));
    }

    #[test]
    fn a_reply_with_a_replica_of_an_unknown_primary_is_unreadable() {
        assert!(parse("5c42 127.0.0.1:1@2 slave ffff 0 0 3 connected\n").is_none());
    }
}

//! A cluster that changes shape while it runs: slots moved between primaries with their keys
//! (`redis-cli --cluster reshard`), a primary added and given slots, slots held mid-migration,
//! and clusters of fewer primaries than `redis-cli --cluster create` allows.

mod common;

use common::{connect, get, role, set_following_moved, timed};
use local_redis::RedisCluster;

/// Keys written before a reshard, enough that every slot range holds some.
const KEYS: usize = 300;

fn write_keys(cluster: &RedisCluster) -> Vec<String> {
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        set_following_moved(cluster, 0, key, &format!("value of {key}"));
    }
    keys
}

/// Every key is served, with its value, by the primary the cluster names for it; returns how
/// many keys each node serves.
fn assert_keys_served(cluster: &RedisCluster, keys: &[String]) -> Vec<usize> {
    let mut served = vec![0; cluster.nodes().len()];
    for key in keys {
        let node = cluster.primary_for_key(key).expect("the slot map");
        assert_eq!(
            get(cluster, node, key),
            Some(format!("value of {key}")),
            "{key} on node {node}"
        );
        served[node] += 1;
    }
    served
}

/// How many slots node `index` serves.
fn slots_of(cluster: &RedisCluster, index: usize) -> usize {
    let ranges = cluster.slots_of(index).expect("the slot map");
    ranges.into_iter().map(|range| range.len()).sum()
}

#[test]
fn a_reshard_moves_slots_and_their_keys_to_another_primary() {
    let cluster = RedisCluster::start().expect("the cluster starts");
    let keys = write_keys(&cluster);
    let primaries = cluster.primaries().expect("the slot map");
    let (from, to) = (primaries[0], primaries[1]);
    let before = (slots_of(&cluster, from), slots_of(&cluster, to));
    let served_before = assert_keys_served(&cluster, &keys);

    timed("reshard of 500 slots", || cluster.reshard(&[from], to, 500)).expect("the slots move");

    assert_eq!(slots_of(&cluster, from), before.0 - 500);
    assert_eq!(slots_of(&cluster, to), before.1 + 500);
    let served_after = assert_keys_served(&cluster, &keys);
    assert!(
        served_after[from] < served_before[from] && served_after[to] > served_before[to],
        "keys moved with their slots: {served_before:?} then {served_after:?}"
    );
    cluster.wait_until_ok().expect("the cluster is ok");
}

#[test]
fn an_added_primary_with_a_replica_takes_slots_from_every_primary_and_serves_their_keys() {
    let mut cluster = RedisCluster::start().expect("the cluster starts");
    let keys = write_keys(&cluster);
    let primaries = cluster.primaries().expect("the slot map");

    let added = timed("add-node", || cluster.add_primary()).expect("the node joins");
    assert_eq!(added, 6);
    assert_eq!(role(cluster.node(added)), "master");
    assert_eq!(slots_of(&cluster, added), 0);
    let replica =
        timed("add-node of its replica", || cluster.add_replica(added)).expect("the replica joins");
    assert_eq!(cluster.replicas_of(added).expect("the slot map"), [replica]);
    assert_eq!(role(cluster.node(replica)), "slave");
    timed("reshard of 4096 slots to the new primary", || {
        cluster.reshard(&primaries, added, 4096)
    })
    .expect("the slots move");

    assert_eq!(slots_of(&cluster, added), 4096);
    for &primary in &primaries {
        let slots = slots_of(&cluster, primary);
        assert!(
            (4000..=4200).contains(&slots),
            "node {primary} serves {slots} slots"
        );
    }
    let served = assert_keys_served(&cluster, &keys);
    assert!(served[added] > 0, "the new primary serves keys: {served:?}");
    assert_eq!(cluster.primaries().expect("the slot map").len(), 4);
    cluster.wait_until_ok().expect("the cluster is ok");
}

/// `GET key` on `node`, `ASKING` first when `asking`: the value, `nil`, or the redirection
/// (`MOVED` or `ASK`) it answered with.
fn get_on(cluster: &RedisCluster, node: usize, key: &str, asking: bool) -> String {
    let mut pipe = redis::pipe();
    if asking {
        pipe.cmd("ASKING").ignore();
    }
    pipe.cmd("GET").arg(key);
    let reply: redis::RedisResult<(Option<String>,)> = pipe.query(&mut connect(cluster.node(node)));
    match reply {
        Ok((value,)) => value.unwrap_or_else(|| "nil".to_owned()),
        Err(err) => {
            let text = err.to_string().to_lowercase();
            let redirection = ["moved", "ask"]
                .into_iter()
                .find(|kind| text.contains(kind));
            redirection.map_or(text.clone(), str::to_uppercase)
        }
    }
}

#[test]
fn keys_of_a_slot_mid_migration_are_served_by_whichever_node_holds_them() {
    let cluster = RedisCluster::start().expect("the cluster starts");
    let from = set_following_moved(&cluster, 0, "moving", "along");
    let to = cluster
        .primaries()
        .expect("the slot map")
        .into_iter()
        .find(|&node| node != from)
        .expect("another primary");
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("moving")
        .query(&mut connect(cluster.node(0)))
        .expect("CLUSTER KEYSLOT");

    let migration = cluster.begin_migration([slot], to).expect("the slot opens");
    assert_eq!(migration.slots().collect::<Vec<_>>(), [slot]);
    assert_eq!(get_on(&cluster, from, "moving", false), "along");
    assert_eq!(get_on(&cluster, to, "moving", false), "MOVED");

    assert_eq!(migration.move_keys(100).expect("the key moves"), 1);
    assert_eq!(get_on(&cluster, from, "moving", false), "ASK");
    assert_eq!(get_on(&cluster, to, "moving", false), "MOVED");
    assert_eq!(get_on(&cluster, to, "moving", true), "along");
    assert_eq!(
        cluster.primary_for_key("moving").expect("the slot map"),
        from
    );

    migration.finish().expect("the slot closes");
    assert_eq!(cluster.primary_for_key("moving").expect("the slot map"), to);
    assert_eq!(get_on(&cluster, to, "moving", false), "along");
    assert_eq!(get_on(&cluster, from, "moving", false), "MOVED");
    cluster.wait_until_ok().expect("the cluster is ok");
}

#[test]
fn clusters_of_one_and_two_primaries_serve_every_slot() {
    let alone = timed("cluster of one primary", || {
        RedisCluster::builder().primaries(1).replicas(0).start()
    })
    .expect("one primary starts");
    assert_eq!(alone.nodes().len(), 1);
    assert_eq!(alone.primaries().expect("the slot map"), [0]);
    assert_eq!(slots_of(&alone, 0), 16384);

    let pair = timed("cluster of two primaries with a replica each", || {
        RedisCluster::builder().primaries(2).start()
    })
    .expect("two primaries start");
    assert_eq!(pair.nodes().len(), 4);
    assert_eq!(pair.primaries().expect("the slot map"), [0, 1]);
    assert_eq!(pair.replicas_of(0).expect("the slot map"), [2]);
    assert_eq!(pair.replicas_of(1).expect("the slot map"), [3]);
    let keys = write_keys(&pair);
    let served = assert_keys_served(&pair, &keys);
    assert!(served[0] > 0 && served[1] > 0, "{served:?}");
}

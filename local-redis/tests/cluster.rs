//! A cluster of three primaries with a replica each: it serves keys on every shard, survives
//! losing a primary, takes the old primary back as a replica, and leaves nothing behind.

mod common;

use std::time::Duration;

use common::{
    a_missing_binary_says_how_to_install_it, assert_none_alive, connect, get, role,
    set_following_moved, timed,
};
use local_redis::RedisCluster;

#[test]
fn a_cluster_serves_keys_on_all_three_shards() {
    let cluster = timed("cluster ok", RedisCluster::start).expect("the cluster starts");
    assert_eq!(cluster.nodes().len(), 6);
    assert_eq!(cluster.urls().len(), 6);
    let primaries = cluster.primaries().expect("the slot map");
    assert_eq!(primaries.len(), 3, "{primaries:?}");
    for &primary in &primaries {
        let replicas = cluster.replicas_of(primary).expect("the slot map");
        assert_eq!(replicas.len(), 1, "node {primary} has {replicas:?}");
        assert_eq!(role(cluster.node(replicas[0])), "slave");
    }
    // Formed with a short node timeout, the nodes now have the default one, which a node
    // stalled by a busy machine does not outlast.
    for node in cluster.nodes() {
        let (_, timeout): (String, String) = redis::cmd("CONFIG")
            .arg("GET")
            .arg("cluster-node-timeout")
            .query(&mut connect(node))
            .expect("CONFIG GET");
        assert_eq!(timeout, "5000", "{}", node.address());
    }

    let mut served_by = Vec::new();
    for i in 0..30 {
        let key = format!("key-{i}");
        let node = set_following_moved(&cluster, 0, &key, "value");
        assert_eq!(
            cluster.primary_for_key(&key).expect("CLUSTER KEYSLOT"),
            node
        );
        assert_eq!(get(&cluster, node, &key).as_deref(), Some("value"));
        served_by.push(node);
    }
    served_by.sort_unstable();
    served_by.dedup();
    let mut expected = primaries.clone();
    expected.sort_unstable();
    assert_eq!(served_by, expected, "every shard took keys");

    let pids: Vec<u32> = cluster.nodes().iter().map(|node| node.pid()).collect();
    drop(cluster);
    assert_none_alive(&pids, "a node outlived the cluster");
}

#[test]
fn a_stopped_primary_is_replaced_by_its_replica_and_returns_as_a_replica() {
    // Quicker than the default node timeout, which is made for clusters where nothing is
    // killed, and still twice a stall a busy machine is likely to cause.
    let mut cluster = RedisCluster::builder()
        .node_timeout(Duration::from_secs(2))
        .start()
        .expect("the cluster starts");
    let primary = cluster.primary_for_key("kept").expect("the slot map");
    let replica = cluster.replicas_of(primary).expect("the slot map")[0];
    let mut connection = connect(cluster.node(primary));
    let () = redis::cmd("SET")
        .arg("kept")
        .arg("through the failover")
        .query(&mut connection)
        .expect("SET");
    // The replica must have the key before its primary goes. (WAIT counts the replicas that
    // have this connection's writes, so it must follow the SET on the same connection.)
    let synced: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query(&mut connection)
        .expect("WAIT");
    assert_eq!(synced, 1);

    cluster.stop(primary);
    timed("cluster failover (primary stopped until ok)", || {
        cluster.wait_until_ok()
    })
    .expect("the replica takes over");
    assert_eq!(
        cluster.primary_for_key("kept").expect("the slot map"),
        replica
    );
    assert_eq!(role(cluster.node(replica)), "master");
    assert_eq!(
        get(&cluster, replica, "kept").as_deref(),
        Some("through the failover")
    );

    timed("cluster old primary back as a replica", || {
        cluster.restart(primary)?;
        cluster.wait_until_ok()
    })
    .expect("the old primary rejoins");
    assert_eq!(role(cluster.node(primary)), "slave");
    assert_eq!(
        cluster.replicas_of(replica).expect("the slot map"),
        [primary]
    );
}

#[test]
fn a_missing_redis_cli_is_an_error_that_says_how_to_install_it() {
    a_missing_binary_says_how_to_install_it(
        (
            "a_missing_redis_cli_is_an_error_that_says_how_to_install_it",
            "REDIS_CLI_BIN",
            "/nonexistent/redis-cli",
        ),
        "apt-get install redis-tools",
        RedisCluster::start,
    );
}

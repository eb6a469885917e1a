//! A primary, its replica and three sentinels: they start settled, a failover (asked for, or
//! forced by stopping the primary) promotes the replica, the sentinels agree on it, and the old
//! primary comes back as a replica.

mod common;

use std::time::Duration;

use common::{assert_none_alive, connect, role, timed};
use local_redis::RedisSentinels;

/// `down-after` for the test that stops the primary: quicker than the default, which is made
/// for setups where nothing is killed, and still twice a stall a busy machine is likely to
/// cause.
const DOWN_AFTER: Duration = Duration::from_secs(2);

/// What `sentinel` answers to `SENTINEL get-master-addr-by-name`.
fn named_primary(setup: &RedisSentinels, sentinel: usize) -> (String, u16) {
    redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(setup.master_name())
        .query(&mut connect(&setup.sentinels()[sentinel]))
        .expect("the sentinel names a primary")
}

#[test]
fn a_sentinel_setup_starts_with_all_sentinels_naming_the_primary() {
    let setup = timed("sentinel setup settled", RedisSentinels::start).expect("it starts");
    assert_eq!(setup.master_name(), "mymaster");
    assert_eq!(setup.sentinel_urls().len(), 3);
    assert_eq!(setup.primary().expect("a sentinel answers"), 0);
    let primary_port = setup.servers()[0].port();
    for sentinel in 0..3 {
        assert_eq!(
            named_primary(&setup, sentinel),
            ("127.0.0.1".to_owned(), primary_port)
        );
    }
    assert_eq!(role(&setup.servers()[1]), "slave");

    let pids: Vec<u32> = setup
        .servers()
        .iter()
        .chain(setup.sentinels())
        .map(|process| process.pid())
        .collect();
    drop(setup);
    assert_none_alive(&pids, "a process outlived the setup");
}

#[test]
fn a_requested_failover_promotes_the_replica_and_demotes_the_primary() {
    let setup = RedisSentinels::start().expect("it starts");
    let () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(setup.master_name())
        .query(&mut connect(&setup.sentinels()[0]))
        .expect("SENTINEL FAILOVER");
    timed("sentinel failover (SENTINEL FAILOVER until agreed)", || {
        setup.wait_for_primary(1)
    })
    .expect("the sentinels agree on the replica");
    assert_eq!(setup.primary().expect("a sentinel answers"), 1);
    assert_eq!(role(&setup.servers()[1]), "master");

    let primary = timed("sentinel old primary turned into a replica", || {
        setup.wait_until_settled()
    })
    .expect("the old primary follows the new one");
    assert_settled_on_replica(&setup, primary);
}

#[test]
fn a_stopped_primary_is_replaced_by_its_replica_and_returns_as_a_replica() {
    let mut setup = RedisSentinels::builder()
        .down_after(DOWN_AFTER)
        .start()
        .expect("it starts");
    setup.stop_server(0);
    timed("sentinel failover (primary stopped until agreed)", || {
        setup.wait_for_primary(1)
    })
    .expect("the sentinels agree on the replica");
    for sentinel in 0..3 {
        assert_eq!(named_primary(&setup, sentinel).1, setup.servers()[1].port());
    }
    let () = redis::cmd("SET")
        .arg("written")
        .arg("to the new primary")
        .query(&mut connect(&setup.servers()[1]))
        .expect("the new primary takes writes");

    let primary = timed("sentinel old primary back as a replica", || {
        setup.restart_server(0)?;
        setup.wait_until_settled()
    })
    .expect("the old primary rejoins");
    assert_settled_on_replica(&setup, primary);
}

/// Checks that the setup settled with server 1 as its primary, so with server 0 as a replica in
/// sync with it (what settled means). The check is the settled state itself, not a second look
/// at server 0's role, which another failover could have changed since.
fn assert_settled_on_replica(setup: &RedisSentinels, primary: usize) {
    assert_eq!(
        primary,
        1,
        "the setup settled on server {primary}; the sentinels' logs:\n{}",
        setup.sentinel_logs()
    );
}

#[test]
fn a_restarted_sentinel_rejoins_with_what_it_knew() {
    let mut setup = RedisSentinels::start().expect("it starts");
    setup.stop_sentinel(0);
    assert_eq!(
        setup.primary().expect("another sentinel answers"),
        0,
        "the running sentinels still name the primary"
    );
    timed("sentinel restarted until settled", || {
        setup.restart_sentinel(0)?;
        setup.wait_until_settled()
    })
    .expect("the sentinel rejoins");
    assert_eq!(
        named_primary(&setup, 0),
        ("127.0.0.1".to_owned(), setup.servers()[0].port())
    );
}

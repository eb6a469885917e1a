//! A primary of the cluster killed under a steady stream of logins, reads, writes and logouts:
//! its replica takes over, the store follows it with no restart, sessions on the other shards
//! never notice, logins and writes acknowledged with `WAIT` survive and sessions logged out
//! with `WAIT` stay gone. Then the whole cluster stopped and started again.
//!
//! The failover's cluster runs with `cluster-require-full-coverage no`, as a deployment that
//! wants its other shards to go on serving during a failover must: with Redis's default
//! (`yes`), every node answers `CLUSTERDOWN` to every command from the moment the primary is
//! marked failing until its replica is promoted (0.8 to 1 s here, whatever the client), and
//! sessions on every shard get `503`s for that long.
//!
//! The failover test prints a table; `--nocapture` shows it.

use std::{
    cell::Cell,
    collections::BTreeMap,
    time::{Duration, Instant},
};

use actix_web::{cookie::Key, http::Method};
use futures_util::future::join_all;
use integration_tests::{
    deployment::{cluster_failing_over_after, cluster_store},
    failover::{Load, Record, sides},
    session_app::{
        Gate, MiddlewareMode, assert_unavailable_within, get_entry, send, session_cookie,
        tracked_app,
    },
};
use local_redis::RedisCluster;
use session_store::RedisSessionStore;

const CLIENTS: usize = 8;
/// Clients without `WAIT` that each keep one session on the killed primary's shard, so that
/// its outage is seen whichever shards the other clients' sessions are on at the kill.
const KEEPING_ON: usize = 2;
/// Clients that each keep one session off the killed primary's shard, so that the other
/// shards see requests all through the failover (the other clients' sessions drift onto the
/// failed shard, where each waits out the outage, and their logins land there too).
const KEEPING_OFF: usize = 4;
const BEFORE: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(10);
/// The cluster's node timeout: how long a primary may not answer before it counts as failing.
const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// The tests of this file measure how long a failover takes: one at a time, so that the
/// other's processes do not slow it down.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The hash slot of `key` (no hash tags in the store's keys).
fn slot(key: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(key.as_bytes()) % 16384
}

#[actix_web::test]
async fn a_killed_primary_is_replaced_and_only_its_shard_waits() {
    let _alone = ALONE.lock().await;
    let mut cluster = RedisCluster::builder()
        .node_timeout(NODE_TIMEOUT)
        .args(&["--cluster-require-full-coverage", "no"])
        .start()
        .expect("a cluster starts");
    let key = Key::generate();
    let (plain, durable) = sides(&key, false, &|builder| cluster_store(&cluster, builder)).await;
    let load = Load::new(key.clone());

    // The victim: the primary of the shard that holds a first session.
    let first = send(&plain.app, Method::POST, "/set/user/alice", None).await;
    let first = session_cookie(&first).expect("a login");
    let first = integration_tests::session_app::redis_key(
        "plain:",
        &integration_tests::session_app::session_key_in(&first, &key),
    );
    let victim = cluster.primary_for_key(&first).expect("a primary");
    let victim_ranges = ranges_of(&cluster, victim).await;
    assert!(!victim_ranges.is_empty(), "the victim serves slots");

    let on_victim = |key: &str| {
        let slot = slot(key);
        victim_ranges
            .iter()
            .any(|(first, last)| (*first..=*last).contains(&slot))
    };

    let until = Instant::now() + BEFORE + AFTER;
    let clients = join_all((0..CLIENTS + KEEPING_OFF + KEEPING_ON).map(|number| {
        let (load, plain, durable, on_victim) = (&load, &plain, &durable, &on_victim);
        async move {
            let off_victim = |key: &str| !on_victim(key);
            if number >= CLIENTS + KEEPING_OFF {
                load.client_keeping(number, plain, until, on_victim).await;
                return;
            }
            match (number < CLIENTS, number % 2 == 0) {
                (true, true) => load.client(number, plain, until).await,
                (true, false) => load.client(number, durable, until).await,
                (false, true) => {
                    load.client_keeping(number, plain, until, off_victim).await;
                }
                (false, false) => {
                    load.client_keeping(number, durable, until, off_victim)
                        .await;
                }
            }
        }
    }));
    let mut stopped = None;
    let fault = async {
        tokio::time::sleep(BEFORE).await;
        cluster.stop(victim);
        stopped = Some(Instant::now());
    };
    // The longest the test's own runtime went without running a 10 ms timer, and when: on a
    // starved machine the whole process stalls now and then, and a request it sent then waits
    // as long, whatever Redis and the store do.
    let (done, stall) = (
        Cell::new(false),
        Cell::new((Duration::ZERO, Instant::now())),
    );
    let watch = async {
        let mut last = Instant::now();
        while !done.get() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = Instant::now();
            if now - last > stall.get().0 {
                stall.set((now - last, last));
            }
            last = now;
        }
    };
    let clients = async {
        clients.await;
        done.set(true);
    };
    futures_util::join!(clients, fault, watch);
    let stopped = stopped.expect("the primary was stopped");
    let (stalled, stalled_at) = stall.get();
    let stalled_at = stalled_at.checked_duration_since(stopped).map_or_else(
        || format!("{:?} before", stopped.duration_since(stalled_at)),
        |after| format!("{after:?} after"),
    );
    let checked = load.check(&plain, &durable).await;
    let logouts = load.take_checked_logouts();
    let records = load.take_records();
    // Sessions with `WAIT` on the failed shard: their writes fail from its promotion on, as
    // they should (its old primary is not back as its replica), so the shard's outage, and its
    // recovery, are told by the plain side's sessions alone.
    let shard = |record: &Record| match record.redis_key.as_deref() {
        Some(key) if on_victim(key) && record.durable => "failed, WAIT",
        Some(key) if on_victim(key) => "failed shard",
        Some(_) => "other shards",
        None => "failed logins",
    };
    let phase = |sent: Instant| -> &'static str {
        if sent < stopped {
            "before"
        } else if sent < stopped + Duration::from_secs(5) {
            "first 5 s after"
        } else {
            "after"
        }
    };
    let mut table = BTreeMap::<(&str, &str), (usize, usize)>::new();
    for record in &records {
        let entry = table
            .entry((phase(record.sent), shard(record)))
            .or_default();
        entry.0 += 1;
        entry.1 += usize::from(record.status != 200);
    }
    let failed = |wanted: &'static str| {
        records
            .iter()
            .filter(move |r| shard(r) == wanted && r.status != 200)
    };
    let unavailable_for = failed("failed shard")
        .map(|record| record.sent)
        .max()
        .map_or(Duration::ZERO, |last| last.duration_since(stopped));
    let other_failures = failed("other shards").count();
    // The other shards saw requests all through the failed shard's outage: the longest time
    // in it with none sent to them.
    let mut other_sent: Vec<Instant> = records
        .iter()
        .filter(|r| shard(r) == "other shards")
        .map(|r| r.sent)
        .filter(|sent| (stopped..=stopped + unavailable_for).contains(sent))
        .chain([stopped, stopped + unavailable_for])
        .collect();
    other_sent.sort();
    let other_gap = other_sent
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default();
    let statuses = records
        .iter()
        .fold(BTreeMap::<u16, usize>::new(), |mut all, r| {
            *all.entry(r.status).or_default() += 1;
            all
        });
    let mut lost = BTreeMap::<(bool, &str), (usize, usize, usize)>::new();
    for (session, login_lost, write_lost) in &checked {
        let entry = lost
            .entry((session.durable, phase(session.login_sent)))
            .or_default();
        entry.0 += 1;
        entry.1 += usize::from(*login_lost);
        entry.2 += usize::from(*write_lost && !login_lost);
    }

    println!(
        "\ncluster failover: {CLIENTS} clients, {KEEPING_OFF} kept off the failed shard and {KEEPING_ON} on it, node timeout {NODE_TIMEOUT:?}, a primary killed after {BEFORE:?}"
    );
    println!(
        "{:<16} {:<14} {:>9} {:>7} {:>7}",
        "phase", "sessions on", "requests", "failed", "req/s"
    );
    for ((phase, shard), (count, failed)) in &table {
        let seconds = match *phase {
            "before" => BEFORE,
            "first 5 s after" => Duration::from_secs(5),
            _ => AFTER - Duration::from_secs(5),
        };
        let rate = *count as f64 / seconds.as_secs_f64();
        println!("{phase:<16} {shard:<14} {count:>9} {failed:>7} {rate:>7.0}");
    }
    println!("statuses: {statuses:?}");
    println!("the failed shard's sessions got 503s until {unavailable_for:?} after the kill");
    println!(
        "failures of sessions on other shards: {other_failures}; longest time without a request to them during the outage: {other_gap:?}"
    );
    println!("longest stall of the test's own runtime: {stalled:?}, {stalled_at} the kill");
    for ((durable, phase), (count, logins, writes)) in &lost {
        let wait = if *durable {
            "with WAIT 1"
        } else {
            "without WAIT"
        };
        println!(
            "logins acknowledged {phase} the kill, {wait}: {count}; missing after: {logins} logins, {writes} last writes"
        );
    }
    let mut logged_out = BTreeMap::<(bool, &str), (usize, usize)>::new();
    for (logout, came_back) in &logouts {
        let entry = logged_out
            .entry((logout.durable, phase(logout.sent)))
            .or_default();
        entry.0 += 1;
        entry.1 += usize::from(*came_back);
    }
    for ((durable, phase), (count, back)) in &logged_out {
        let wait = if *durable {
            "with WAIT 1"
        } else {
            "without WAIT"
        };
        println!(
            "logouts acknowledged {phase} the kill, {wait}: {count}; sessions back after: {back}"
        );
    }

    assert!(
        statuses.keys().all(|status| [200, 503].contains(status)),
        "{statuses:?}"
    );
    assert!(unavailable_for > Duration::ZERO, "the failover went unseen");
    // The replica counts its primary as failing after the node timeout, waits 0.5 to 1 s
    // before asking for votes, and wins within another node timeout; redis-rs finds the new
    // primary on its next retry. With room for a busy machine: 3 × node timeout + 3 s.
    assert!(
        unavailable_for < NODE_TIMEOUT * 3 + Duration::from_secs(3),
        "the failed shard was unavailable for {unavailable_for:?}"
    );
    assert_eq!(
        other_failures, 0,
        "sessions on other shards failed (the test's own runtime stalled for up to {stalled:?}, \
         {stalled_at} the kill)"
    );
    assert!(
        other_gap < Duration::from_millis(500),
        "the other shards went {other_gap:?} without a request during the outage"
    );
    let durable_lost: usize = lost
        .iter()
        .filter(|((durable, _), _)| *durable)
        .map(|(_, (_, logins, writes))| logins + writes)
        .sum();
    assert_eq!(
        durable_lost, 0,
        "logins or writes acknowledged with WAIT were lost"
    );
    for ((phase, shard), (count, failed)) in &table {
        if *phase == "after" && ["failed shard", "other shards"].contains(shard) {
            assert!(
                *count > 0 && *failed == 0,
                "{shard}: {failed} of {count} failed after recovery"
            );
        }
    }
}

/// The slot ranges `node` serves as a primary, from `CLUSTER SLOTS`: entries of
/// `[first slot, last slot, [host, port, id], replicas...]`.
async fn ranges_of(cluster: &RedisCluster, node: usize) -> Vec<(u16, u16)> {
    let port = i64::from(cluster.node(node).port());
    let slots: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(
            &mut redis::Client::open(cluster.node(node).url())
                .expect("a URL")
                .get_multiplexed_async_connection()
                .await
                .expect("the node answers"),
        )
        .await
        .expect("CLUSTER SLOTS");
    let redis::Value::Array(ranges) = slots else {
        panic!("CLUSTER SLOTS answered {slots:?}");
    };
    ranges
        .iter()
        .filter_map(|range| {
            let redis::Value::Array(range) = range else {
                return None;
            };
            let [
                redis::Value::Int(first),
                redis::Value::Int(last),
                redis::Value::Array(primary),
                ..,
            ] = range.as_slice()
            else {
                return None;
            };
            (primary.get(1) == Some(&redis::Value::Int(port)))
                .then(|| (u16::try_from(*first).ok(), u16::try_from(*last).ok()))
                .and_then(|(first, last)| Some((first?, last?)))
        })
        .collect()
}

#[actix_web::test]
async fn a_stopped_cluster_means_fast_503s_then_recovery() {
    let _alone = ALONE.lock().await;
    let mut cluster = cluster_failing_over_after(NODE_TIMEOUT);
    let key = Key::generate();
    let store = cluster_store(&cluster, RedisSessionStore::builder());
    let app = tracked_app(
        store,
        &key,
        MiddlewareMode::COOKIE_MODES[0].clone(),
        Gate::default(),
    )
    .await;
    let login = send(&app, Method::POST, "/set/user/alice", None).await;
    let cookie = session_cookie(&login).expect("a session cookie");

    for node in 0..cluster.nodes().len() {
        cluster.stop(node);
    }
    for (method, path, cookie) in [
        (Method::GET, "/get/user", Some(&cookie)),
        (Method::POST, "/set/user/bob", None),
    ] {
        assert_unavailable_within(&app, (method, path), cookie, Duration::from_secs(5)).await;
    }

    for node in 0..cluster.nodes().len() {
        cluster.restart(node).expect("the node restarts");
    }
    cluster.wait_until_ok().expect("the cluster is ok again");
    // This cluster keeps nothing on disk: the old session is gone, the store works again.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            send(&app, Method::POST, "/set/user/carol", None)
                .await
                .status()
                .as_u16(),
        );
    }
    assert!(
        statuses[1..].iter().all(|status| *status == 200),
        "{statuses:?}"
    );
    assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "none");
}

//! A primary of the cluster killed under a steady stream of logins, reads and writes: its
//! replica takes over, the store follows it with no restart, sessions on the other shards
//! never notice, and logins acknowledged with `WAIT` survive.
//!
//! Two stores share the cluster and the load: one plain, one whose writes wait for a replica
//! (`min_replica_acks(1, ..)`). The test prints a table; `--nocapture` shows it.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    time::{Duration, Instant},
};

use actix_web::{
    cookie::{Cookie, Key},
    http::Method,
};
use futures_util::future::join_all;
use integration_tests::session_app::{
    Gate, MiddlewareMode, TestApp, get_entry, redis_key, send, session_cookie, session_key_in,
    tracked_app,
};
use local_redis::RedisCluster;
use session_store::RedisSessionStore;

const CLIENTS: usize = 8;
const BEFORE: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(10);
/// The cluster's node timeout: how long a primary may not answer before it counts as failing.
const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// One of the two stores under load.
struct Side<A> {
    app: A,
    prefix: &'static str,
    durable: bool,
}

/// A session a login acknowledged.
struct Acked {
    cookie: Cookie<'static>,
    durable: bool,
    before_stop: bool,
}

/// One request: when it was sent, what it was for, how it ended.
struct Record {
    sent: Instant,
    status: u16,
    /// The Redis key of the session it used; `None` for a login that failed (its session was
    /// never made, so it has no shard).
    redis_key: Option<String>,
}

struct Run {
    key: Key,
    stopped: RefCell<Option<Instant>>,
    records: RefCell<Vec<Record>>,
    acked: RefCell<Vec<Acked>>,
}

impl Run {
    async fn log_in<A: TestApp>(&self, side: &Side<A>) -> Option<(Cookie<'static>, String)> {
        let sent = Instant::now();
        let response = send(&side.app, Method::POST, "/set/user/alice", None).await;
        let status = response.status().as_u16();
        let session = (status == 200).then(|| {
            let cookie = session_cookie(&response).expect("a session cookie");
            let redis_key = redis_key(side.prefix, &session_key_in(&cookie, &self.key));
            (cookie, redis_key)
        });
        self.records.borrow_mut().push(Record {
            sent,
            status,
            redis_key: session.as_ref().map(|(_, key)| key.clone()),
        });
        if let Some((cookie, _)) = &session {
            self.acked.borrow_mut().push(Acked {
                cookie: cookie.clone(),
                durable: side.durable,
                before_stop: self.stopped.borrow().is_none(),
            });
        }
        session
    }

    async fn client<A: TestApp>(&self, number: usize, side: &Side<A>, until: Instant) {
        let mut session = None;
        let mut step = number;
        while Instant::now() < until {
            step += 1;
            let Some((cookie, redis_key)) = &session else {
                session = self.log_in(side).await;
                if session.is_none() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            };
            let (method, path) = match step % 20 {
                0 => {
                    session = None;
                    continue;
                }
                n if n % 4 == 0 => (Method::POST, format!("/set/step/{step}")),
                _ => (Method::GET, "/get/user".to_owned()),
            };
            let sent = Instant::now();
            let status = send(&side.app, method, &path, Some(cookie))
                .await
                .status()
                .as_u16();
            self.records.borrow_mut().push(Record {
                sent,
                status,
                redis_key: Some(redis_key.clone()),
            });
            if status == 503 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The hash slot of `key` (no hash tags in the store's keys).
fn slot(key: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(key.as_bytes()) % 16384
}

#[actix_web::test]
async fn a_killed_primary_is_replaced_and_only_its_shard_waits() {
    let mut cluster = RedisCluster::builder()
        .node_timeout(NODE_TIMEOUT)
        .start()
        .expect("a cluster starts");
    let key = Key::generate();
    let mode = MiddlewareMode::COOKIE_MODES[0].clone();
    let store = |prefix: &str, durable: bool| {
        let builder = RedisSessionStore::builder().key_prefix(prefix);
        let builder = if durable {
            builder.min_replica_acks(1, Duration::from_millis(500))
        } else {
            builder
        };
        builder
            .build_with_cluster(cluster.urls())
            .expect("valid URLs")
    };
    let plain = Side {
        app: tracked_app(store("plain:", false), &key, mode.clone(), Gate::default()).await,
        prefix: "plain:",
        durable: false,
    };
    let durable = Side {
        app: tracked_app(store("durable:", true), &key, mode, Gate::default()).await,
        prefix: "durable:",
        durable: true,
    };
    let run = Run {
        key: key.clone(),
        stopped: RefCell::new(None),
        records: RefCell::default(),
        acked: RefCell::default(),
    };

    // The victim: the primary of the shard that holds the first session.
    let (_, first) = run.log_in(&plain).await.expect("a login");
    let victim = cluster.primary_for_key(&first).expect("a primary");
    let victim_ranges = ranges_of(&cluster, victim).await;
    assert!(!victim_ranges.is_empty(), "the victim serves slots");

    let started = Instant::now();
    let until = started + BEFORE + AFTER;
    let clients = join_all((0..CLIENTS).map(|number| {
        let run = &run;
        let (plain, durable) = (&plain, &durable);
        async move {
            if number % 2 == 0 {
                run.client(number, plain, until).await;
            } else {
                run.client(number, durable, until).await;
            }
        }
    }));
    let fault = async {
        tokio::time::sleep(BEFORE).await;
        cluster.stop(victim);
        *run.stopped.borrow_mut() = Some(Instant::now());
    };
    futures_util::join!(clients, fault);
    let stopped = run.stopped.borrow().expect("the primary was stopped");

    // Every acknowledged session reads back through its app.
    let mut missing = BTreeMap::<(bool, bool), (usize, usize)>::new();
    for acked in run.acked.take() {
        let app_holds = match acked.durable {
            false => get_entry(&plain.app, "user", Some(&acked.cookie)).await,
            true => get_entry(&durable.app, "user", Some(&acked.cookie)).await,
        } == "alice";
        let tally = missing
            .entry((acked.durable, acked.before_stop))
            .or_default();
        tally.0 += 1;
        tally.1 += usize::from(!app_holds);
    }

    let on_victim = |record: &Record| {
        record.redis_key.as_deref().map(|key| {
            let slot = slot(key);
            victim_ranges
                .iter()
                .any(|(first, last)| (*first..=*last).contains(&slot))
        })
    };
    let records = run.records.borrow();
    let phase = |record: &Record| -> &'static str {
        if record.sent < stopped {
            "before"
        } else if record.sent < stopped + Duration::from_secs(5) {
            "first 5 s after"
        } else {
            "after"
        }
    };
    let mut table = BTreeMap::<(&str, &str), (usize, usize)>::new();
    for record in records.iter() {
        let shard = match on_victim(record) {
            Some(true) => "failed shard",
            Some(false) => "other shards",
            None => "failed logins",
        };
        let entry = table.entry((phase(record), shard)).or_default();
        entry.0 += 1;
        entry.1 += usize::from(record.status != 200);
    }
    let victim_failures: Vec<Instant> = records
        .iter()
        .filter(|record| on_victim(record) == Some(true) && record.status != 200)
        .map(|record| record.sent)
        .collect();
    let unavailable_for = victim_failures
        .iter()
        .max()
        .map_or(Duration::ZERO, |last| last.duration_since(stopped));
    let other_failures = records
        .iter()
        .filter(|record| on_victim(record) == Some(false) && record.status != 200)
        .count();
    let statuses: BTreeMap<u16, usize> = records.iter().fold(BTreeMap::new(), |mut all, r| {
        *all.entry(r.status).or_default() += 1;
        all
    });

    println!(
        "\ncluster failover: {CLIENTS} clients, node timeout {NODE_TIMEOUT:?}, primary killed at {BEFORE:?}"
    );
    println!(
        "{:<16} {:<14} {:>9} {:>9} {:>9}",
        "phase", "sessions on", "requests", "failed", "req/s"
    );
    for ((phase, shard), (count, failed)) in &table {
        let seconds = match *phase {
            "before" => BEFORE.as_secs_f64(),
            "first 5 s after" => 5.0,
            _ => (AFTER - Duration::from_secs(5)).as_secs_f64(),
        };
        println!(
            "{phase:<16} {shard:<14} {count:>9} {failed:>9} {:>9.0}",
            *count as f64 / seconds
        );
    }
    println!("statuses: {statuses:?}");
    println!("requests of the failed shard answered 503 until {unavailable_for:?} after the kill");
    println!("failures of sessions on other shards: {other_failures}");
    for ((durable, before_stop), (count, lost)) in &missing {
        println!(
            "acknowledged {} the kill, {}: {count} sessions, {lost} missing after it",
            if *before_stop { "before" } else { "after" },
            if *durable {
                "with WAIT 1"
            } else {
                "without WAIT"
            },
        );
    }

    assert!(
        statuses.keys().all(|status| [200, 503].contains(status)),
        "{statuses:?}"
    );
    assert!(!victim_failures.is_empty(), "the failover went unseen");
    // The replica counts its primary as failing after the node timeout, waits up to a second
    // before asking for votes (500 ms plus up to 500 ms at random), and wins within another
    // node timeout; redis-rs then finds the new primary on its next retry. Twice that, with
    // room for a busy machine: 3 × node timeout + 3 s.
    assert!(
        unavailable_for < NODE_TIMEOUT * 3 + Duration::from_secs(3),
        "the failed shard was unavailable for {unavailable_for:?}"
    );
    assert_eq!(other_failures, 0, "sessions on other shards failed");
    let durable_lost: usize = missing
        .iter()
        .filter(|((durable, _), _)| *durable)
        .map(|(_, (_, lost))| lost)
        .sum();
    assert_eq!(durable_lost, 0, "logins acknowledged with WAIT were lost");
    let after = table
        .iter()
        .filter(|((phase, shard), _)| *phase == "after" && *shard != "failed logins")
        .map(|(_, (count, failed))| (count, failed));
    for (count, failed) in after {
        assert!(
            *count > 0 && *failed == 0,
            "requests still failing after recovery"
        );
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
    let mut cluster = RedisCluster::builder()
        .node_timeout(NODE_TIMEOUT)
        .start()
        .expect("a cluster starts");
    let key = Key::generate();
    let store = RedisSessionStore::builder()
        .build_with_cluster(cluster.urls())
        .expect("valid URLs");
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
        let started = Instant::now();
        let response = send(&app, method.clone(), path, cookie).await;
        assert_eq!(response.status(), 503, "{method} {path}");
        assert_eq!(
            response.headers().get("retry-after").expect("Retry-After"),
            "1"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{method} {path} took {:?}",
            started.elapsed()
        );
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

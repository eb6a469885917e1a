//! The near cache across instances: three apps (instances, each with its own store, cache and
//! invalidation link) on one Redis deployment. A change on one instance (a write, a logout, a
//! revocation, a renewal) is never served stale by another once the change's answer is back;
//! an invalidation link cut by Redis makes its instance read from Redis until the link is
//! back; a session idle past its timeout and the granularity is gone everywhere.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use actix_web::{
    cookie::{Cookie, Key},
    http::Method,
};
use futures_util::future::join_all;
use integration_tests::{
    deployment::{Deployment, unique_prefix},
    session_app::{
        TestApp, app, get_entry, log_in, redis_key, send, session_cookie, session_key_in,
    },
};
use metrics_util::{
    MetricKind,
    debugging::{DebugValue, DebuggingRecorder, Snapshotter},
};
use session_store::{RedisSessionStore, RedisSessionStoreBuilder};

/// Instances sharing each deployment.
const INSTANCES: usize = 3;

/// Change-then-read pairs per deployment, all workers together.
const PAIRS: usize = 10_000;

/// Sessions changed and read at once.
const WORKERS: usize = 8;

fn near(prefix: &str) -> RedisSessionStoreBuilder {
    RedisSessionStore::builder()
        .key_prefix(prefix)
        .user_entry("user")
        .near_cache(10_000)
}

/// The process's metrics recorder (each test runs in a process of its own).
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder).expect("the only recorder");
        snapshotter
    })
}

/// The near-cache reads of the stores labelled `store` since the last call: hits, misses.
fn near_reads(store: &str) -> (u64, u64) {
    let (mut hits, mut misses) = (0, 0);
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let (MetricKind::Counter, DebugValue::Counter(count)) = (key.kind(), value) else {
            continue;
        };
        let key = key.key();
        let label = |name: &str| {
            key.labels()
                .find(|label| label.key() == name)
                .map(|label| label.value().to_owned())
        };
        if key.name() == "session_store_near_cache_reads_total"
            && label("store").as_deref() == Some(store)
        {
            match label("result").as_deref() {
                Some("hit") => hits += count,
                _ => misses += count,
            }
        }
    }
    (hits, misses)
}

/// Three instances on `deployment` with `builder`'s settings and one cookie key.
async fn instances(
    deployment: &Deployment,
    builder: fn(&str) -> RedisSessionStoreBuilder,
    prefix: &str,
) -> (Vec<RedisSessionStore>, Vec<impl TestApp + use<>>, Key) {
    let key = Key::generate();
    let mut stores = Vec::new();
    let mut apps = Vec::new();
    for _ in 0..INSTANCES {
        let store = deployment.store_with(builder(prefix));
        apps.push(app(store.clone(), &key).await);
        stores.push(store);
    }
    // Until every link is up, reads go to Redis: wait for one read served from memory.
    (stores, apps, key)
}

/// Reads `name` through instance `reader` until two reads in a row agree, so that its cache
/// holds the session (a copy is made by a read from Redis, served by the next).
async fn prime(app: &impl TestApp, name: &str, cookie: &Cookie<'static>) -> String {
    get_entry(app, name, Some(cookie)).await;
    get_entry(app, name, Some(cookie)).await
}

/// The reference of the session `cookie` carries (sealed with `key`) under `prefix`.
fn reference(cookie: &Cookie<'static>, key: &Key, prefix: &str) -> String {
    let redis_key = redis_key(prefix, &session_key_in(cookie, key));
    redis_key[prefix.len() + 2..][..12].to_owned()
}

/// What one worker saw: pairs run, stale reads (what was read, what the change left).
#[derive(Default)]
struct Tally {
    pairs: usize,
    stale: Vec<String>,
}

/// Runs `pairs` change-then-read pairs on a session of its own: each primes the reader's
/// copy, changes the session on another instance, and reads it on the reader as soon as the
/// change's answer is back. Changes rotate: a write, a renewal, a logout, a revocation.
async fn worker(
    apps: &[impl TestApp],
    stores: &[RedisSessionStore],
    key: &Key,
    prefix: &str,
    number: usize,
    pairs: usize,
) -> Tally {
    let mut tally = Tally::default();
    let mut cookie = log_in(&apps[number % INSTANCES]).await;
    for i in 0..pairs {
        let writer = (number + i) % INSTANCES;
        let reader = (writer + 1 + i % 2) % INSTANCES;
        let primed = prime(&apps[reader], "user", &cookie).await;
        if primed != "alice" {
            tally.stale.push(format!(
                "pair {i}: the session read {primed} before any change"
            ));
        }
        let value = i.to_string();
        match i % 4 {
            0 | 1 => {
                let path = format!("/set/n/{value}");
                let set = send(&apps[writer], Method::POST, &path, Some(&cookie)).await;
                assert_eq!(set.status(), 200);
                let read = get_entry(&apps[reader], "n", Some(&cookie)).await;
                if read != value {
                    tally
                        .stale
                        .push(format!("pair {i} (write): read {read}, wrote {value}"));
                }
            }
            2 => {
                let renewed = send(&apps[writer], Method::POST, "/renew", Some(&cookie)).await;
                assert_eq!(renewed.status(), 200);
                let old = get_entry(&apps[reader], "user", Some(&cookie)).await;
                if old != "none" {
                    tally
                        .stale
                        .push(format!("pair {i} (renewal): the old id read {old}"));
                }
                cookie = session_cookie(&renewed).expect("the renewed session's cookie");
            }
            _ => {
                let ended = if i % 8 == 3 {
                    let purged = send(&apps[writer], Method::POST, "/purge", Some(&cookie)).await;
                    purged.status() == 200
                } else {
                    let reference = reference(&cookie, key, prefix);
                    stores[writer]
                        .revoke(&"alice", &reference)
                        .await
                        .expect("a revocation")
                };
                assert!(ended, "pair {i}: the session ended");
                let read = get_entry(&apps[reader], "user", Some(&cookie)).await;
                if read != "none" {
                    tally.stale.push(format!("pair {i} (logout): read {read}"));
                }
                cookie = log_in(&apps[writer]).await;
            }
        }
        tally.pairs += 1;
    }
    tally
}

/// Waits until instance `app` serves a read of `cookie`'s session from memory, as its store's
/// link is up: reads of a session whose copy is servable leave Redis untouched, so a change
/// made behind the store's back (straight in Redis) is what tells.
async fn wait_until_linked(apps: &[impl TestApp]) {
    // The links come up within a few heartbeats; give them a generous bound.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = apps;
}

async fn no_change_is_served_stale(deployment: Deployment) {
    let prefix = unique_prefix();
    snapshotter();
    let (stores, apps, key) = instances(&deployment, near, &prefix).await;
    wait_until_linked(&apps).await;
    let started = Instant::now();
    let per_worker = PAIRS.div_ceil(WORKERS);
    let tallies = join_all(
        (0..WORKERS).map(|number| worker(&apps, &stores, &key, &prefix, number, per_worker)),
    )
    .await;
    let pairs: usize = tallies.iter().map(|tally| tally.pairs).sum();
    let stale: Vec<&String> = tallies.iter().flat_map(|tally| &tally.stale).collect();
    let (hits, misses) = near_reads(&prefix);
    eprintln!(
        "{}: {pairs} change-then-read pairs across {INSTANCES} instances in {:?}, {} stale; \
         reads from memory {hits}, from Redis {misses}",
        deployment.name(),
        started.elapsed(),
        stale.len()
    );
    assert!(pairs >= PAIRS);
    // Each pair primes a copy with two reads: most second reads must come from memory, or
    // the pairs test nothing.
    assert!(hits >= pairs as u64 / 2, "{hits} reads served from memory");
    assert!(stale.is_empty(), "{} stale reads: {stale:?}", stale.len());
}

#[actix_web::test]
async fn no_change_is_served_stale_on_a_single_server() {
    no_change_is_served_stale(Deployment::single()).await;
}

#[actix_web::test]
async fn no_change_is_served_stale_on_a_cluster() {
    no_change_is_served_stale(Deployment::cluster()).await;
}

#[actix_web::test]
async fn no_change_is_served_stale_behind_sentinel() {
    no_change_is_served_stale(Deployment::sentinel()).await;
}

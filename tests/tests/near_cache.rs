//! The near cache across instances: three apps (instances, each with its own store, cache and
//! invalidation link) on one Redis deployment. A change on one instance (a write, a logout, a
//! revocation, a renewal) is never served stale by another once the change's answer is back;
//! an invalidation link cut by Redis makes its instance read from Redis until the link is
//! back; failovers and a reshard serve nothing stale; a session idle past its timeout and the
//! granularity is gone everywhere; every invalidation arrives, and how late is measured; a
//! lagging path from Redis to one instance serves a changed copy for at most the link's
//! silence.

use std::time::{Duration, Instant};

use actix_web::{
    cookie::{Cookie, Key},
    http::Method,
};
use futures_util::future::join_all;
use integration_tests::{
    deployment::{Deployment, unique_prefix},
    recorder,
    session_app::{
        TestApp, app, get_entry, log_in, redis_key, send, session_cookie, session_key_in, set_entry,
    },
};
use session_store::{RedisSessionStore, RedisSessionStoreBuilder};

/// Instances sharing each deployment.
const INSTANCES: usize = 3;

/// Change-then-read pairs per deployment, all workers together.
const PAIRS: usize = 10_000;

/// Sessions changed and read at once.
const WORKERS: usize = 8;

fn near(prefix: &str) -> RedisSessionStoreBuilder {
    without_near_cache(prefix).near_cache(10_000)
}

/// The instances' settings but the near cache.
fn without_near_cache(prefix: &str) -> RedisSessionStoreBuilder {
    RedisSessionStore::builder()
        .key_prefix(prefix)
        .user_entry("user")
        .seal_entries(std::env::var("NO_NEAR").is_err())
}

/// The near-cache reads of the stores labelled `store` so far: from memory, from Redis.
fn near_reads(store: &str) -> (u64, u64) {
    let reads = |result| {
        recorder::counter(
            "session_store_near_cache_reads_total",
            &[("store", store), ("result", result)],
        )
    };
    (reads("hit"), reads("miss"))
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

/// Waits until every instance serves reads of `cookie`'s session from memory (their links are
/// up); panics after 10 s.
async fn wait_until_linked(apps: &[impl TestApp], cookie: &Cookie<'static>, store: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for app in apps {
        loop {
            let (before, _) = near_reads(store);
            prime(app, "user", cookie).await;
            if near_reads(store).0 > before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the near cache never served a read"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn no_change_is_served_stale(deployment: Deployment, wanted: usize) {
    let prefix = unique_prefix();
    recorder::install();
    let (stores, apps, key) = instances(&deployment, near, &prefix).await;
    wait_until_linked(&apps, &log_in(&apps[0]).await, &prefix).await;
    let (hits_before, misses_before) = near_reads(&prefix);
    let started = Instant::now();
    let per_worker = wanted.div_ceil(WORKERS);
    let tallies = join_all(
        (0..WORKERS).map(|number| worker(&apps, &stores, &key, &prefix, number, per_worker)),
    )
    .await;
    let pairs: usize = tallies.iter().map(|tally| tally.pairs).sum();
    let stale: Vec<&String> = tallies.iter().flat_map(|tally| &tally.stale).collect();
    let (hits, misses) = near_reads(&prefix);
    let (hits, misses) = (hits - hits_before, misses - misses_before);
    eprintln!(
        "{}: {pairs} change-then-read pairs across {INSTANCES} instances in {:?}, {} stale; \
         reads from memory {hits}, from Redis {misses}",
        deployment.name(),
        started.elapsed(),
        stale.len()
    );
    assert!(pairs >= wanted);
    // Each pair primes a copy with two reads, and the second should come from memory (most
    // do: 13,000 to 14,500 of 10,000 pairs' reads on a quiet machine); a machine stalled past
    // the link's 400 ms of silence serves fewer, but a run with few served tests nothing.
    assert!(hits >= pairs as u64 / 10, "{hits} reads served from memory");
    assert!(stale.is_empty(), "{} stale reads: {stale:?}", stale.len());
}

#[actix_web::test]
async fn no_change_is_served_stale_on_a_single_server() {
    no_change_is_served_stale(Deployment::single(), PAIRS).await;
}

#[actix_web::test]
async fn no_change_is_served_stale_on_a_cluster() {
    no_change_is_served_stale(Deployment::cluster(), PAIRS).await;
}

#[actix_web::test]
async fn no_change_is_served_stale_behind_sentinel() {
    no_change_is_served_stale(Deployment::sentinel(), PAIRS).await;
}

/// The pairs again on a machine kept busy by two processes that never sleep (as many as it
/// has cores here), so that the links' threads wait for a CPU: no stale read either.
#[actix_web::test]
async fn no_change_is_served_stale_on_a_busy_machine() {
    /// Processes that spin until dropped.
    struct Busy(Vec<std::process::Child>);
    impl Drop for Busy {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let spin = || {
        std::process::Command::new("yes")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("`yes` runs (coreutils)")
    };
    let _busy = Busy(vec![spin(), spin()]);
    no_change_is_served_stale(Deployment::single(), PAIRS / 4).await;
}

/// The tracking connections of every server of `deployment`, killed by Redis (`CLIENT KILL`):
/// returns how many.
async fn kill_tracking_connections(deployment: &Deployment) -> usize {
    let mut killed = 0;
    for client in deployment.clients() {
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("the server answers");
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut connection)
            .await
            .expect("CLIENT LIST");
        for line in clients.lines() {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|field| field.strip_prefix(name))
                    .unwrap_or_default()
            };
            if field("flags=").contains('t') {
                let _: u64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("ID")
                    .arg(field("id="))
                    .query_async(&mut connection)
                    .await
                    .expect("CLIENT KILL");
                killed += 1;
            }
        }
    }
    killed
}

/// Redis cuts every instance's invalidation link: each instance reads from Redis meanwhile
/// (a change made then is never served stale) and from memory again once its link is back.
async fn a_cut_link_fails_closed_and_comes_back(deployment: Deployment) {
    let prefix = unique_prefix();
    recorder::install();
    let (_stores, apps, _) = instances(&deployment, near, &prefix).await;
    let cookie = log_in(&apps[0]).await;
    wait_until_linked(&apps, &cookie, &prefix).await;
    for round in 0..5 {
        for app in &apps {
            prime(app, "user", &cookie).await;
        }
        assert!(kill_tracking_connections(&deployment).await >= INSTANCES);
        let value = format!("after-cut-{round}");
        let path = format!("/set/n/{value}");
        assert_eq!(
            send(&apps[0], Method::POST, &path, Some(&cookie))
                .await
                .status(),
            200
        );
        for (number, app) in apps.iter().enumerate().skip(1) {
            let read = get_entry(app, "n", Some(&cookie)).await;
            assert_eq!(
                read, value,
                "round {round}: instance {number} read a stale copy"
            );
        }
        wait_until_linked(&apps, &cookie, &prefix).await;
    }
}

#[actix_web::test]
async fn a_cut_link_fails_closed_and_comes_back_on_a_single_server() {
    a_cut_link_fails_closed_and_comes_back(Deployment::single()).await;
}

#[actix_web::test]
async fn a_cut_link_fails_closed_and_comes_back_on_a_cluster() {
    a_cut_link_fails_closed_and_comes_back(Deployment::cluster().alone()).await;
}

#[actix_web::test]
async fn a_cut_link_fails_closed_and_comes_back_behind_sentinel() {
    a_cut_link_fails_closed_and_comes_back(Deployment::sentinel().alone()).await;
}

/// A session idle for longer than its idle timeout plus the slide granularity is gone on
/// every instance, though each held a copy; one read within that time keeps it.
#[actix_web::test]
async fn an_idle_session_ends_on_every_instance() {
    let deployment = Deployment::single();
    let prefix = unique_prefix();
    recorder::install();
    let (_stores, apps, _) = instances(
        &deployment,
        |prefix| {
            near(prefix)
                .idle_timeout(Duration::from_millis(1500))
                .slide_granularity(Duration::from_millis(300))
        },
        &prefix,
    )
    .await;
    let idle = log_in(&apps[0]).await;
    let active = log_in(&apps[0]).await;
    wait_until_linked(&apps, &idle, &prefix).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        for app in &apps {
            assert_eq!(get_entry(app, "user", Some(&active)).await, "alice");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (number, app) in apps.iter().enumerate() {
        assert_eq!(
            get_entry(app, "user", Some(&idle)).await,
            "none",
            "instance {number}: a session idle for {:?}",
            started.elapsed()
        );
        assert_eq!(get_entry(app, "user", Some(&active)).await, "alice");
    }
}

/// `GET /get/{name}` with `cookie`: the entry's value or `"none"`, or `None` when the
/// instance could not answer (Redis unavailable during a failover).
async fn try_get(app: &impl TestApp, name: &str, cookie: &Cookie<'static>) -> Option<String> {
    let response = send(app, Method::GET, &format!("/get/{name}"), Some(cookie)).await;
    if !response.status().is_success() {
        return None;
    }
    let body = actix_web::test::read_body(response).await;
    Some(String::from_utf8(body.to_vec()).expect("a UTF-8 body"))
}

/// Writes on one instance, each read on another as soon as its answer is back, until
/// `until`: the stale reads among them, and how many pairs completed. A pair whose write or
/// read Redis could not take (during a failover) is left out.
async fn pairs_until(apps: &[impl TestApp], number: usize, until: Instant) -> (Vec<String>, usize) {
    let (mut stale, mut done) = (Vec::new(), 0);
    let mut cookie = None;
    let mut i = 0;
    while Instant::now() < until {
        i += 1;
        let writer = (number + i) % INSTANCES;
        let reader = (writer + 1) % INSTANCES;
        let Some(session) = &cookie else {
            let login = send(&apps[writer], Method::POST, "/set/user/alice", None).await;
            cookie = session_cookie(&login).filter(|_| login.status() == 200);
            continue;
        };
        if try_get(&apps[reader], "n", session).await.is_none() {
            continue;
        }
        try_get(&apps[reader], "n", session).await;
        let value = i.to_string();
        let set = send(
            &apps[writer],
            Method::POST,
            &format!("/set/n/{value}"),
            Some(session),
        )
        .await;
        if set.status() != 200 {
            // Unknown whether it landed; a session lost to the failover starts again.
            cookie = None;
            continue;
        }
        match try_get(&apps[reader], "n", session).await {
            Some(read) if read != value => {
                stale.push(format!("pair {i}: read {read}, wrote {value}"))
            }
            Some(_) => done += 1,
            None => {}
        }
    }
    (stale, done)
}

/// Promotes a replica: on a cluster, one of the first primary's (`CLUSTER FAILOVER`); behind
/// Sentinel, whichever the sentinels pick (`SENTINEL FAILOVER`).
async fn fail_over(deployment: &Deployment) {
    let (client, command) = match deployment {
        Deployment::Cluster(cluster) => {
            let primary = cluster.primaries().expect("the cluster's primaries")[0];
            let replica = cluster.replicas_of(primary).expect("its replicas")[0];
            let node = cluster.node(replica);
            (
                redis::Client::open(node.url()).expect("a node's URL"),
                redis::cmd("CLUSTER").arg("FAILOVER").clone(),
            )
        }
        Deployment::Sentinel(sentinels) => {
            let url = &sentinels.sentinel_urls()[0];
            let mut command = redis::cmd("SENTINEL");
            command.arg("FAILOVER").arg(sentinels.master_name());
            (
                redis::Client::open(url.as_str()).expect("a sentinel's URL"),
                command,
            )
        }
        Deployment::Single(_) => panic!("a single server has no replica"),
    };
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("the server answers");
    let () = command
        .query_async(&mut connection)
        .await
        .expect("the failover starts");
}

/// Writes on one instance read on another while a replica is promoted: no read is stale, and
/// once the failover is over the instances serve from memory again.
async fn a_failover_serves_nothing_stale(deployment: Deployment) {
    let prefix = unique_prefix();
    recorder::install();
    // Writes wait for the replica: a write the old primary took after the promotion, which
    // the failover loses with or without a cache, fails instead of being acknowledged.
    let builder = |prefix: &str| near(prefix).min_replica_acks(1, Duration::from_millis(200));
    let (_stores, apps, _) = instances(&deployment, builder, &prefix).await;
    wait_until_linked(&apps, &log_in(&apps[0]).await, &prefix).await;
    let until = Instant::now() + Duration::from_secs(8);
    let workers = join_all((0..WORKERS).map(|number| pairs_until(&apps, number, until)));
    let failover = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        fail_over(&deployment).await;
    };
    let (results, ()) = futures_util::join!(workers, failover);
    let stale: Vec<&String> = results.iter().flat_map(|(stale, _)| stale).collect();
    let done: usize = results.iter().map(|(_, done)| done).sum();
    eprintln!(
        "{}: {done} pairs through a failover, {} stale",
        deployment.name(),
        stale.len()
    );
    assert!(stale.is_empty(), "{} stale reads: {stale:?}", stale.len());
    assert!(done > 100, "only {done} pairs completed");
    // Once the failover is over (writes are taken again), reads come from memory again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let cookie = loop {
        let login = send(&apps[0], Method::POST, "/set/user/alice", None).await;
        if login.status() == 200 {
            break session_cookie(&login).expect("a session cookie");
        }
        assert!(Instant::now() < deadline, "no login after the failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait_until_linked(&apps, &cookie, &prefix).await;
}

#[actix_web::test]
async fn a_cluster_failover_serves_nothing_stale() {
    a_failover_serves_nothing_stale(Deployment::cluster().alone()).await;
}

#[actix_web::test]
async fn a_sentinel_failover_serves_nothing_stale() {
    a_failover_serves_nothing_stale(Deployment::sentinel().alone()).await;
}

/// How long after a change's answer its invalidation reaches a tracking connection: a client
/// writes a session key over and over (`HSET`, each awaited); a connection of the test's own,
/// tracking the session prefix as an instance's link does, notes when each invalidation
/// arrives. Every write's invalidation must arrive within a second; the median, the 99th
/// percentile and the largest delay are printed (negative: before the answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalidation_arrives_and_its_delay_is_measured() {
    const WRITES: usize = 5_000;
    let server = integration_tests::RedisServer::start();
    let prefix = unique_prefix();
    let (sender, arrivals) = std::sync::mpsc::channel::<Instant>();
    let tracking =
        redis::Client::open(format!("{}?protocol=resp3", server.url())).expect("a valid URL");
    let config =
        redis::AsyncConnectionConfig::new().set_push_sender(move |push: redis::PushInfo| {
            if push.kind == redis::PushKind::Invalidate {
                sender.send(Instant::now())
            } else {
                Ok(())
            }
        });
    let mut link = tracking
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("a RESP3 connection");
    let () = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(format!("{prefix}s:"))
        .query_async(&mut link)
        .await
        .expect("CLIENT TRACKING");
    let mut writer = server.connection().await;
    let key = format!("{prefix}s:probe");
    let mut delays = Vec::with_capacity(WRITES);
    for i in 0..WRITES {
        let _: u64 = redis::cmd("HSET")
            .arg(&key)
            .arg("n")
            .arg(i)
            .query_async(&mut writer)
            .await
            .expect("HSET");
        let answered = Instant::now();
        let arrived = arrivals
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_else(|_| panic!("write {i}: no invalidation within 1 s"));
        delays.push(if arrived >= answered {
            arrived.duration_since(answered).as_secs_f64()
        } else {
            -answered.duration_since(arrived).as_secs_f64()
        });
    }
    delays.sort_by(f64::total_cmp);
    let micros = |seconds: f64| seconds * 1e6;
    eprintln!(
        "invalidation delay after the write's answer, {WRITES} writes: median {:.0} µs, \
         99th percentile {:.0} µs, largest {:.0} µs (negative: before the answer)",
        micros(delays[WRITES / 2]),
        micros(delays[WRITES * 99 / 100]),
        micros(delays[WRITES - 1]),
    );
}

/// A primary added to the cluster and given a quarter of the slots while writes on one
/// instance are read on another: the link tracks the new node within a heartbeat of its
/// joining, before the reshard moves anything to it, and no read is stale.
#[actix_web::test]
async fn a_reshard_onto_a_new_primary_serves_nothing_stale() {
    use integration_tests::deployment::cluster_store;
    use local_redis::RedisCluster;

    let prefix = unique_prefix();
    recorder::install();
    let mut cluster = RedisCluster::start().expect("a cluster starts");
    let key = Key::generate();
    let mut apps = Vec::new();
    for _ in 0..INSTANCES {
        apps.push(app(cluster_store(&cluster, near(&prefix)), &key).await);
    }
    wait_until_linked(&apps, &log_in(&apps[0]).await, &prefix).await;
    let until = Instant::now() + Duration::from_secs(10);
    let workers = join_all((0..WORKERS).map(|number| pairs_until(&apps, number, until)));
    let reshard = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::task::spawn_blocking(move || {
            let primaries = cluster.primaries().expect("the slot map");
            let added = cluster.add_primary().expect("the primary joins");
            cluster
                .reshard(&primaries, added, 4096)
                .expect("the slots move");
            cluster
        })
        .await
        .expect("the reshard succeeds")
    };
    let (results, cluster) = futures_util::join!(workers, reshard);
    let stale: Vec<&String> = results.iter().flat_map(|(stale, _)| stale).collect();
    let done: usize = results.iter().map(|(_, done)| done).sum();
    eprintln!(
        "cluster: {done} pairs through a reshard onto a new primary, {} stale",
        stale.len()
    );
    assert!(stale.is_empty(), "{} stale reads: {stale:?}", stale.len());
    assert!(done > 100, "only {done} pairs completed");
    wait_until_linked(&apps, &log_in(&apps[0]).await, &prefix).await;
    drop(cluster);
}

/// A lagging path from Redis to one instance (what Redis sends its tracking connection held
/// back, as a lost and resent packet or a congested link would hold it): a change's answer
/// can then reach its client before the invalidation reaches the instance, so the socket
/// check cannot see it coming. The heartbeat bounds it: the instance may serve its copy only
/// until 400 ms after the last heartbeat its link answered, which was sent before the path
/// stalled, so at most 400 ms after the change; then its reads go to Redis, and once the path
/// is clear, from memory again.
#[actix_web::test]
async fn a_lagging_link_serves_a_changed_copy_for_at_most_its_silence() {
    use integration_tests::{RedisServer, Relay};

    const SILENCE: Duration = Duration::from_millis(400);
    let server = RedisServer::start();
    let relay = Relay::start(([127, 0, 0, 1], server.port()).into()).await;
    let prefix = unique_prefix();
    recorder::install();
    let key = Key::generate();
    let writer = app(server.store_with(without_near_cache(&prefix)), &key).await;
    let reader = near(&prefix).build_with_url(&relay.url()).expect("a store");
    let reader = app(reader, &key).await;
    let cookie = log_in(&writer).await;
    assert_eq!(
        set_entry(&writer, "n", "0", Some(&cookie)).await.status(),
        200
    );
    wait_until_linked(std::slice::from_ref(&reader), &cookie, &prefix).await;
    assert_eq!(prime(&reader, "n", &cookie).await, "0");

    relay.stall_tracking(true);
    assert_eq!(
        set_entry(&writer, "n", "1", Some(&cookie)).await.status(),
        200
    );
    let changed = Instant::now();
    let (mut last_stale, mut stale, mut fresh) = (None, 0, 0);
    while changed.elapsed() < 3 * SILENCE {
        let sent = changed.elapsed();
        match get_entry(&reader, "n", Some(&cookie)).await.as_str() {
            "0" => {
                stale += 1;
                last_stale = Some(sent);
            }
            "1" => fresh += 1,
            other => panic!("read {other}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "path stalled: {stale} reads served the old copy, the last sent {last_stale:?} after \
         the change's answer; {fresh} read the change"
    );
    assert!(
        last_stale.is_none_or(|sent| sent <= SILENCE),
        "the old copy was served to a read sent {last_stale:?} after the change"
    );
    assert!(fresh > 0, "no read after the silence went to Redis");

    relay.stall_tracking(false);
    wait_until_linked(std::slice::from_ref(&reader), &cookie, &prefix).await;
    assert_eq!(get_entry(&reader, "n", Some(&cookie)).await, "1");
}

/// A read from memory is still a load in the store's metrics (`outcome="ok"`), and costs no
/// round trip.
#[actix_web::test]
async fn a_read_from_memory_counts_as_a_load_with_no_round_trip() {
    const READS: u64 = 20;
    let deployment = Deployment::single();
    let prefix = unique_prefix();
    recorder::install();
    let (_stores, apps, _) = instances(&deployment, near, &prefix).await;
    let cookie = log_in(&apps[0]).await;
    wait_until_linked(&apps[..1], &cookie, &prefix).await;
    let counters = || {
        let store = [("store", prefix.as_str())];
        let loads = [store[0], ("operation", "load"), ("outcome", "ok")];
        (
            recorder::counter("session_store_operations_total", &loads),
            recorder::counter("session_store_redis_round_trips_total", &store),
            near_reads(&prefix).0,
        )
    };
    let before = counters();
    for _ in 0..READS {
        assert_eq!(get_entry(&apps[0], "user", Some(&cookie)).await, "alice");
    }
    let after = counters();
    let hits = after.2 - before.2;
    assert!(hits >= READS - 1, "{hits} of {READS} reads from memory");
    assert_eq!(after.0 - before.0, READS, "loads counted");
    assert_eq!(
        after.1 - before.1,
        READS - hits,
        "round trips: one per read from Redis"
    );
}

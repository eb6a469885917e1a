//! The cluster resized under a steady stream of logins, reads, writes and logouts: slots moved
//! from one primary to another with `redis-cli --cluster reshard`, and a primary (with its
//! replica) added and given slots, as an operator would do both. No request may fail, no login
//! or write acknowledged may be lost, and no logout acknowledged undone. Then what the store
//! does with a session whose key has moved while its slot is still open, the state a reshard of
//! slots holding many keys spends its time in.
//!
//! The load tests print a table; `--nocapture` shows it.

use std::{
    cell::Cell,
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{
    cookie::{Cookie, Key},
    http::Method,
};
use futures_util::future::join_all;
use integration_tests::{
    deployment::cluster_store,
    failover::{Load, Record, sides},
    session_app::{TestApp, app, get_entry, log_in, redis_key, send, session_key_in},
};
use local_redis::RedisCluster;
use session_store::RedisSessionStore;

const CLIENTS: usize = 8;
/// Sessions placed on slots the resize moves, and read and written by a client of their own
/// all through it, so that requests reach moving slots however short the resize is.
const PLACED: usize = 8;
/// Load before the resize starts, and after it ends.
const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(2);
/// Slots in the key space.
const SLOTS: usize = 16384;

/// The hash slot of `key` (no hash tags in the store's keys).
fn slot(key: &str) -> usize {
    usize::from(crc16::State::<crc16::XMODEM>::calculate(key.as_bytes())) % SLOTS
}

/// The node that serves each slot.
fn owners(cluster: &RedisCluster) -> Vec<usize> {
    let mut owners = vec![usize::MAX; SLOTS];
    for node in 0..cluster.nodes().len() {
        for range in cluster.slots_of(node).expect("the slot map") {
            for slot in range {
                owners[usize::from(slot)] = node;
            }
        }
    }
    owners
}

/// What a load test saw.
struct Outcome {
    /// Requests by `(phase, sessions on)`: how many, how many failed.
    table: BTreeMap<(&'static str, &'static str), (usize, usize)>,
    statuses: BTreeMap<u16, usize>,
    /// Sessions read back after the load, and how many of them lost their login or their last
    /// acknowledged write.
    checked: usize,
    lost_logins: usize,
    lost_writes: usize,
    /// Sessions whose logout was acknowledged, read back after the load, and how many of them
    /// came back.
    logouts_checked: usize,
    logouts_back: usize,
    /// `ASK` and `MOVED` replies the nodes sent: how often clients were redirected.
    redirections: (u64, u64),
    /// How long the resize took.
    resize: Duration,
    /// How many of the [`PLACED`] sessions had their slot moved by the resize.
    placed_moved: usize,
}

impl Outcome {
    fn failed(&self) -> usize {
        self.table.values().map(|(_, failed)| failed).sum()
    }

    /// Requests, during the resize, of sessions whose slot moved.
    fn moved_during(&self) -> usize {
        self.table
            .get(&("during", "moved slots"))
            .map_or(0, |(count, _)| *count)
    }

    fn print(&self, what: &str) {
        println!(
            "\n{what}: {CLIENTS} clients, the resize took {:.2} s",
            self.resize.as_secs_f64()
        );
        println!(
            "{:<8} {:<14} {:>9} {:>7}",
            "phase", "sessions on", "requests", "failed"
        );
        for ((phase, slots), (count, failed)) in &self.table {
            println!("{phase:<8} {slots:<14} {count:>9} {failed:>7}");
        }
        println!("statuses: {:?}", self.statuses);
        println!(
            "redirections the nodes answered with: {} ASK, {} MOVED",
            self.redirections.0, self.redirections.1
        );
        println!(
            "sessions checked after: {}; logins lost: {}; acknowledged writes lost: {}; \
             logouts checked: {}, undone: {}",
            self.checked,
            self.lost_logins,
            self.lost_writes,
            self.logouts_checked,
            self.logouts_back
        );
    }

    /// No request failed, nothing acknowledged was lost, many sessions were checked, and the
    /// load reached moved slots while they moved.
    fn assert_nothing_failed_or_lost(&self) {
        assert_eq!(
            self.placed_moved, PLACED,
            "sessions placed on slots the resize was to move whose slot moved: redis-cli took \
             other slots than the lowest of each source"
        );
        assert_eq!(self.failed(), 0, "failed requests: {:?}", self.statuses);
        assert_eq!(self.lost_logins, 0, "acknowledged logins lost");
        assert_eq!(self.lost_writes, 0, "acknowledged writes lost");
        assert_eq!(self.logouts_back, 0, "acknowledged logouts undone");
        assert!(
            self.checked + self.logouts_checked >= 100,
            "only {} sessions and {} logouts checked",
            self.checked,
            self.logouts_checked
        );
        assert!(
            self.moved_during() > 0,
            "no request reached a moving slot during the resize"
        );
        // The store's connections learnt of the new owners from the nodes' own redirections
        // (the placed sessions are on moved slots), not from a lucky refresh.
        assert!(
            self.redirections.0 + self.redirections.1 > 0,
            "no node answered ASK or MOVED: the load never met the resize"
        );
    }
}

/// Runs the load on a plain store and one whose writes wait for a replica (`WAIT 1`), runs
/// `resize` on the cluster after [`BEFORE`] on a thread of its own (it blocks), keeps the load
/// on for [`AFTER`] once it is done, then reads back every session a login acknowledged.
/// `taken` are the slots the resize will move (see [`taken_by_reshard`]): [`PLACED`] sessions
/// are made on them first, and a client of their own uses them all through the load.
async fn under_load(
    cluster: RedisCluster,
    taken: Vec<usize>,
    resize: impl FnOnce(&mut RedisCluster) + Send + 'static,
) -> Outcome {
    let key = Key::generate();
    let (plain, durable) = sides(&key, true, &|builder| cluster_store(&cluster, builder)).await;
    let placed = place_sessions(&plain.app, &key, &taken).await;
    let load = Load::new(key);
    let before = owners(&cluster);
    let cluster = Arc::new(Mutex::new(cluster));

    let (started, finished) = (Cell::new(None), Cell::new(None::<Instant>));
    let running = || finished.get().is_none_or(|done| done.elapsed() < AFTER);
    let clients = join_all((0..CLIENTS).map(|number| {
        let (load, plain, durable, running) = (&load, &plain, &durable, &running);
        async move {
            if number % 2 == 0 {
                load.client_while(number, plain, running).await;
            } else {
                load.client_while(number, durable, running).await;
            }
        }
    }));
    let resizing = async {
        tokio::time::sleep(BEFORE).await;
        started.set(Some(Instant::now()));
        let cluster = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || {
            resize(&mut cluster.lock().expect("no panic while holding the cluster"));
        })
        .await
        .expect("the resize succeeds");
        finished.set(Some(Instant::now()));
    };
    let placed_client = use_placed(&plain.app, &placed, &running);
    let (_, placed_records, ()) = futures_util::join!(clients, placed_client, resizing);
    let window = (
        started.get().expect("the resize started"),
        finished.get().expect("the resize ended"),
    );
    let (after, redirections) = {
        let cluster = cluster.lock().expect("no panic while holding the cluster");
        (owners(&cluster), redirections(&cluster))
    };
    let moved = |key: &str| before[slot(key)] != after[slot(key)];

    let checked = load.check(&plain, &durable).await;
    let logouts = load.take_checked_logouts();
    let mut records = load.take_records();
    records.extend(placed_records);
    for (cookie, _) in &placed {
        assert_eq!(
            get_entry(&plain.app, "user", Some(cookie)).await,
            "alice",
            "a placed session lost its login"
        );
    }
    Outcome {
        table: tabulate(&records, window, moved),
        statuses: records.iter().fold(BTreeMap::new(), |mut all, record| {
            *all.entry(record.status).or_default() += 1;
            all
        }),
        checked: checked.len(),
        lost_logins: checked.iter().filter(|(_, login, _)| *login).count(),
        lost_writes: checked
            .iter()
            .filter(|(_, login, write)| *write && !login)
            .count(),
        logouts_checked: logouts.len(),
        logouts_back: logouts.iter().filter(|(_, back)| *back).count(),
        redirections,
        resize: window.1 - window.0,
        placed_moved: placed.iter().filter(|(_, key)| moved(key)).count(),
    }
}

/// The slots `redis-cli --cluster reshard` takes first from `sources` when it moves `slots` of
/// them: it takes from each source a share in proportion to the slots it serves, lowest slots
/// first. This keeps to the first half of each share, so that rounding cannot make it wrong.
fn taken_by_reshard(cluster: &RedisCluster, sources: &[usize], slots: usize) -> Vec<usize> {
    let owners = &owners(cluster);
    let share = slots / sources.len() / 2;
    sources
        .iter()
        .flat_map(|&source| {
            (0..SLOTS)
                .filter(move |&slot| owners[slot] == source)
                .take(share)
        })
        .collect()
}

/// Logs in until [`PLACED`] sessions have their keys on `slots`: `(cookie, Redis key)`.
async fn place_sessions(
    app: &impl TestApp,
    key: &Key,
    slots: &[usize],
) -> Vec<(Cookie<'static>, String)> {
    let mut placed = Vec::new();
    for _ in 0..100_000 {
        let cookie = log_in(app).await;
        let redis_key = redis_key("plain:", &session_key_in(&cookie, key));
        if slots.contains(&slot(&redis_key)) {
            placed.push((cookie, redis_key));
            if placed.len() == PLACED {
                return placed;
            }
        }
    }
    panic!(
        "100,000 logins placed only {} sessions on the slots",
        placed.len()
    );
}

/// Reads and writes the placed sessions in turn for as long as `running` says.
async fn use_placed(
    app: &impl TestApp,
    placed: &[(Cookie<'static>, String)],
    running: &impl Fn() -> bool,
) -> Vec<Record> {
    let mut records = Vec::new();
    for step in 0.. {
        if !running() {
            break;
        }
        let (cookie, redis_key) = &placed[step % placed.len()];
        let (method, path) = if step % 2 == 0 {
            (Method::GET, "/get/user".to_owned())
        } else {
            (Method::POST, format!("/set/step/{step}"))
        };
        let sent = Instant::now();
        let status = send(app, method, &path, Some(cookie))
            .await
            .status()
            .as_u16();
        records.push(Record {
            sent,
            answered: Instant::now(),
            status,
            redis_key: Some(redis_key.clone()),
            durable: false,
        });
        // Leaves the other clients their share of the single-threaded test runtime.
        tokio::task::yield_now().await;
    }
    records
}

/// The `ASK` and `MOVED` replies every node sent so far, from `INFO errorstats` (Redis counts
/// error replies by their first word).
fn redirections(cluster: &RedisCluster) -> (u64, u64) {
    let mut counts = (0, 0);
    for node in cluster.nodes() {
        let info: String = redis::cmd("INFO")
            .arg("errorstats")
            .query(
                &mut redis::Client::open(node.url())
                    .expect("a URL")
                    .get_connection()
                    .expect("the node answers"),
            )
            .expect("INFO errorstats");
        let count = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(&format!("errorstat_{name}:count=")))
                .map_or(0, |count| count.trim().parse::<u64>().expect("a count"))
        };
        counts.0 += count("ASK");
        counts.1 += count("MOVED");
    }
    counts
}

/// Requests and failures by phase (before, during, after the resize: a request in flight
/// while the resize ran counts as during it) and by whether their session's slot moved.
fn tabulate(
    records: &[Record],
    (started, finished): (Instant, Instant),
    moved: impl Fn(&str) -> bool,
) -> BTreeMap<(&'static str, &'static str), (usize, usize)> {
    let mut table = BTreeMap::new();
    for record in records {
        let phase = if record.answered < started {
            "before"
        } else if record.sent < finished {
            "during"
        } else {
            "after"
        };
        let slots = match record.redis_key.as_deref() {
            Some(key) if moved(key) => "moved slots",
            Some(_) => "other slots",
            None => "failed logins",
        };
        let entry: &mut (usize, usize) = table.entry((phase, slots)).or_default();
        entry.0 += 1;
        entry.1 += usize::from(record.status != 200);
    }
    table
}

#[actix_web::test]
async fn slots_moved_by_redis_cli_under_load_fail_no_request_and_lose_no_session() {
    let cluster = RedisCluster::start().expect("a cluster starts");
    let primaries = cluster.primaries().expect("the slot map");
    let (from, to) = (primaries[0], primaries[1]);
    let taken = taken_by_reshard(&cluster, &[from], 500);

    let outcome = under_load(cluster, taken, move |cluster| {
        cluster.reshard(&[from], to, 500).expect("the slots move");
    })
    .await;

    outcome.print("500 slots moved from one primary to another");
    outcome.assert_nothing_failed_or_lost();
}

#[actix_web::test]
async fn a_primary_added_under_load_takes_a_quarter_of_the_slots_and_nothing_fails_or_is_lost() {
    let cluster = RedisCluster::start().expect("a cluster starts");
    let primaries = cluster.primaries().expect("the slot map");
    let taken = taken_by_reshard(&cluster, &primaries, 4096);

    let outcome = under_load(cluster, taken, move |cluster| {
        let added = cluster.add_primary().expect("the primary joins");
        // The durable store's writes wait for a replica: the new shard needs one too.
        cluster.add_replica(added).expect("its replica joins");
        cluster
            .reshard(&primaries, added, 4096)
            .expect("the slots move");
    })
    .await;

    outcome.print("a fourth primary added and given 4096 slots");
    outcome.assert_nothing_failed_or_lost();
}

/// A reshard moves a slot's keys a few at a time (`MIGRATE`), and only then gives the slot to
/// its new primary. In between, the old primary answers `ASK` for a key it no longer has, and
/// the new one serves that key only to a command that follows an `ASKING`. redis-rs sends one
/// `ASKING` before a whole pipeline, so the store sends such a request again command by
/// command (see `session-store/src/backend/batch.rs`): reads and writes of a session caught mid-move
/// work, at the cost of a few more round trips.
#[actix_web::test]
async fn a_session_whose_key_moved_while_its_slot_is_still_open_is_read_and_written() {
    let cluster = RedisCluster::start().expect("a cluster starts");
    let key = Key::generate();
    let store = cluster_store(&cluster, RedisSessionStore::builder());
    let app = app(store, &key).await;
    let to = cluster.primaries().expect("the slot map")[0];
    let mut moving = Vec::new();
    while moving.len() < 10 {
        let cookie = log_in(&app).await;
        let redis_key = redis_key("session:", &session_key_in(&cookie, &key));
        if cluster.primary_for_key(&redis_key).expect("the slot map") != to {
            moving.push((cookie, redis_key));
        }
    }
    let slots = moving.iter().map(|(_, key)| slot(key) as u16);
    let migration = cluster.begin_migration(slots, to).expect("the slots open");
    assert!(migration.move_keys(100).expect("the keys move") >= moving.len());

    let mut answers = Vec::new();
    for (cookie, _) in &moving {
        let read = send(&app, Method::GET, "/get/user", Some(cookie)).await;
        let write = send(&app, Method::POST, "/set/step/1", Some(cookie)).await;
        answers.push((read.status().as_u16(), write.status().as_u16()));
    }
    migration.finish().expect("the slots close");
    assert!(
        answers.iter().all(|&answer| answer == (200, 200)),
        "(read, write) statuses of sessions whose key moved while the slot was open: {answers:?}"
    );
    for (cookie, _) in &moving {
        assert_eq!(get_entry(&app, "user", Some(cookie)).await, "alice");
        assert_eq!(get_entry(&app, "step", Some(cookie)).await, "1");
    }
}

//! The primary behind Sentinel killed, or demoted while it keeps running, under a steady stream
//! of logins, reads and writes: the store follows the new primary with no restart, and no login
//! or write it acknowledged after the switch is lost (with `WAIT`, none at all). A demoted
//! primary that keeps running executes nothing of the store's once the switch is announced, as
//! its own `MONITOR` shows, until the sentinels make it a replica.
//!
//! Each test prints a table; `--nocapture` shows it.

use std::{
    cell::Cell,
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use actix_web::cookie::Key;
use futures_util::{StreamExt as _, future::join_all};
use integration_tests::{
    deployment::{sentinel_store, sentinels_failing_over_after},
    failover::{Load, Record, Session, Side, sides},
    session_app::TestApp,
};
use local_redis::RedisSentinels;

const CLIENTS: usize = 8;
const BEFORE: Duration = Duration::from_secs(3);
/// How long the sentinels wait before they count a primary that does not answer as down.
const DOWN_AFTER: Duration = Duration::from_millis(1000);
/// How long after a kill the sentinels must have announced a new primary: a few elections.
const SWITCH_WITHIN: Duration = Duration::from_secs(30);
/// How long after the test hears of a switch a request may still have been sent on a
/// connection to the old primary: the store hears of it through its own subscription.
const IN_FLIGHT: Duration = Duration::from_millis(100);

/// The tests of this file measure how long a failover takes: one at a time, so that the
/// other's processes do not slow it down.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The plain and the durable side on `sentinels`.
async fn sides_on(
    sentinels: &RedisSentinels,
    key: &Key,
) -> (Side<impl TestApp + use<>>, Side<impl TestApp + use<>>) {
    sides(key, true, &|builder| sentinel_store(sentinels, builder)).await
}

/// Runs the load on both sides for as long as `running` says, with `fault` happening
/// meanwhile.
async fn under_load<A: TestApp, B: TestApp>(
    load: &Load,
    plain: &Side<A>,
    durable: &Side<B>,
    running: &dyn Fn() -> bool,
    fault: impl Future<Output = ()>,
) {
    let clients = join_all((0..CLIENTS).map(|number| async move {
        if number % 2 == 0 {
            load.client_while(number, plain, running).await;
        } else {
            load.client_while(number, durable, running).await;
        }
    }));
    futures_util::join!(clients, fault);
}

/// The time the sentinel at `url` announces a `+switch-master`.
async fn switch_announced(url: String) -> Instant {
    let client = redis::Client::open(url).expect("a URL");
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .expect("the sentinel answers");
    pubsub.subscribe("+switch-master").await.expect("SUBSCRIBE");
    pubsub.on_message().next().await.expect("a switch");
    Instant::now()
}

/// Prints the requests of each phase (relative to `fault`) and returns how long after it
/// the last request failed.
fn print_requests(records: &[Record], fault: Instant, after: Duration) -> Duration {
    let phase = |sent: Instant| -> &'static str {
        if sent < fault {
            "before"
        } else if sent < fault + Duration::from_secs(5) {
            "first 5 s after"
        } else {
            "after"
        }
    };
    let mut table = BTreeMap::<&str, (usize, usize)>::new();
    for record in records {
        let entry = table.entry(phase(record.sent)).or_default();
        entry.0 += 1;
        entry.1 += usize::from(record.status != 200);
    }
    println!(
        "{:<16} {:>9} {:>7} {:>7}",
        "phase", "requests", "failed", "req/s"
    );
    for (phase, (count, failed)) in &table {
        let seconds = match *phase {
            "before" => BEFORE,
            "first 5 s after" => Duration::from_secs(5),
            _ => after - Duration::from_secs(5),
        };
        let rate = *count as f64 / seconds.as_secs_f64();
        println!("{phase:<16} {count:>9} {failed:>7} {rate:>7.0}");
    }
    records
        .iter()
        .filter(|record| record.status != 200 && record.sent >= fault)
        .map(|record| record.sent.duration_since(fault))
        .max()
        .unwrap_or_default()
}

/// Acknowledged logins and last writes of one side, sent before or after a switch, and how
/// many of each were lost.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    logins: usize,
    logins_lost: usize,
    writes: usize,
    writes_lost: usize,
}

/// Prints and returns the acknowledged logins and last writes, and those lost, by side and by
/// whether each was sent after `switch` (with a margin for a request already in flight when the
/// store heard of it): `(durable, after the switch) → tally`, every key present.
///
/// Each login and each last write counts by its own send time, not the session's: a login that
/// landed on the doomed primary before the switch is lost with it, whatever its session did
/// next; its later writes went to a session the new primary does not have (the store answered
/// them with a new one, whose cookie the load ignores), so they are not counted at all.
fn tally_losses(
    checked: &[(Session, bool, bool)],
    switch: Instant,
) -> BTreeMap<(bool, bool), Tally> {
    let after = |sent: Instant| sent >= switch + IN_FLIGHT;
    let mut tallies: BTreeMap<(bool, bool), Tally> = [false, true]
        .into_iter()
        .flat_map(|durable| [(durable, false), (durable, true)])
        .map(|bucket| (bucket, Tally::default()))
        .collect();
    for (session, login_lost, write_lost) in checked {
        let login = tallies
            .get_mut(&(session.durable, after(session.login_sent)))
            .expect("every bucket");
        login.logins += 1;
        login.logins_lost += usize::from(*login_lost);
        if let (Some((_, sent)), false) = (session.last_write, *login_lost) {
            let write = tallies
                .get_mut(&(session.durable, after(sent)))
                .expect("every bucket");
            write.writes += 1;
            write.writes_lost += usize::from(*write_lost);
        }
    }
    for ((durable, after), tally) in &tallies {
        println!(
            "{} the switch, {}: {} logins acknowledged, {} lost; {} last writes acknowledged, {} lost",
            if *after { "sent after" } else { "sent before" },
            if *durable {
                "with WAIT 1"
            } else {
                "without WAIT"
            },
            tally.logins,
            tally.logins_lost,
            tally.writes,
            tally.writes_lost,
        );
    }
    tallies
}

/// Asserts that nothing acknowledged was lost, except without `WAIT` before the switch; then
/// that there was something to lose: sessions with `WAIT`, and logins and writes without it
/// after the switch.
fn assert_nothing_acknowledged_lost(tallies: &BTreeMap<(bool, bool), Tally>) {
    for ((durable, after), tally) in tallies {
        if *durable || *after {
            assert_eq!(
                (tally.logins_lost, tally.writes_lost),
                (0, 0),
                "logins and last writes acknowledged {}, sent {} the switch, and lost",
                if *durable {
                    "with WAIT"
                } else {
                    "without WAIT"
                },
                if *after { "after" } else { "before" },
            );
        }
    }
    let durable = tallies[&(true, false)].logins + tallies[&(true, true)].logins;
    assert!(durable > 0, "no session with WAIT to check");
    let plain_after = tallies[&(false, true)];
    assert!(
        plain_after.logins > 0 && plain_after.writes > 0,
        "no login or write without WAIT after the switch to check: {plain_after:?}"
    );
}

#[actix_web::test]
async fn a_killed_primary_is_followed_with_no_restart() {
    let _alone = ALONE.lock().await;
    let mut sentinels = sentinels_failing_over_after(DOWN_AFTER);
    let key = Key::generate();
    let (plain, durable) = sides_on(&sentinels, &key).await;
    let load = Load::new(key);
    let start = Instant::now();
    let old_primary = sentinels.primary().expect("a primary");

    // The load goes on at least 10 s after the kill and 5 s after the switch, however long
    // the sentinels take: on a busy machine an election can fail, and the next comes twice the
    // failover timeout later.
    let switched = Cell::new(None);
    let sentinel = sentinels.sentinel_urls()[0].clone();
    let announced = async {
        let switch = tokio::time::timeout(BEFORE + SWITCH_WITHIN, switch_announced(sentinel))
            .await
            .unwrap_or_else(|_| panic!("no switch announced within {SWITCH_WITHIN:?} of the kill"));
        switched.set(Some(switch));
        switch
    };
    let mut killed = None;
    let fault = async {
        tokio::time::sleep(BEFORE).await;
        sentinels.stop_server(old_primary);
        killed = Some(Instant::now());
    };
    let running = || {
        let now = Instant::now();
        now < start + BEFORE + SWITCH_WITHIN
            && (now < start + BEFORE + Duration::from_secs(10)
                || switched
                    .get()
                    .is_none_or(|switch| now < switch + Duration::from_secs(5)))
    };
    let (switch, ()) = futures_util::join!(
        announced,
        under_load(&load, &plain, &durable, &running, fault)
    );
    let killed = killed.expect("the primary was killed");
    let after = killed.elapsed();
    let checked = load.check(&plain, &durable).await;
    let records = load.take_records();

    println!(
        "\nSentinel failover: {CLIENTS} clients, down-after {DOWN_AFTER:?}, the primary killed after {BEFORE:?}"
    );
    // The durable side cannot write until the old primary is back as a replica: its
    // requests tell nothing of how soon the store follows the new primary.
    let plain_records: Vec<Record> = records
        .into_iter()
        .filter(|record| !record.durable)
        .collect();
    let unavailable_for = print_requests(&plain_records, killed, after);
    println!(
        "switch announced {:?} after the kill",
        switch.duration_since(killed)
    );
    println!("requests without WAIT failed until {unavailable_for:?} after the kill");
    let tallies = tally_losses(&checked, switch);

    assert!(unavailable_for > Duration::ZERO, "the failover went unseen");
    // The sentinels count the primary down after down-after-milliseconds, agree (quorum 2),
    // elect a leader and promote the replica: about two down-afters, more when an election
    // fails on a busy machine. That is Sentinel's time; the store's is what follows: it
    // connects to the new primary as soon as the switch is announced, so no request sent
    // after the announcement fails (with a margin for one sent as it arrived).
    let announced_after = switch.duration_since(killed);
    assert!(
        unavailable_for < announced_after + Duration::from_secs(1),
        "requests failed for {unavailable_for:?}, the switch announced {announced_after:?} after \
         the kill"
    );
    assert_nothing_acknowledged_lost(&tallies);
    assert!(
        plain_records
            .iter()
            .rev()
            .take(50)
            .all(|record| record.status == 200),
        "still failing at the end"
    );
}

/// Every command a server executes, as its `MONITOR` reports it, until the connection closes:
/// the sentinels close it (they kill every normal client) as they make the server a replica.
/// What it executed in the last moment before, still unsent to the monitor, is not seen.
struct Executed {
    lines: Arc<Mutex<Vec<String>>>,
    /// When the server closed the monitor.
    closed: Arc<OnceLock<Instant>>,
    reader: tokio::task::JoinHandle<()>,
    /// A connection opened before monitoring began, for the markers.
    markers: redis::aio::MultiplexedConnection,
}

impl Executed {
    async fn start(server: &local_redis::RedisServer) -> Self {
        let client = redis::Client::open(server.url()).expect("a URL");
        let markers = client
            .get_multiplexed_async_connection()
            .await
            .expect("the server answers");
        let mut messages = client
            .get_async_monitor()
            .await
            .expect("MONITOR accepted")
            .into_on_message::<String>();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(OnceLock::new());
        let (sink, close) = (Arc::clone(&lines), Arc::clone(&closed));
        let reader = tokio::spawn(async move {
            while let Some(line) = messages.next().await {
                sink.lock().expect("monitor lock").push(line);
            }
            close.set(Instant::now()).expect("closed once");
        });
        Self {
            lines,
            closed,
            reader,
            markers,
        }
    }

    /// When the server closed the monitor, if it has.
    fn closed(&self) -> Option<Instant> {
        self.closed.get().copied()
    }

    /// Puts `marker` in the record (an `ECHO`): what the server executed after it, it
    /// executed after the marker was sent.
    async fn mark(&self, marker: &str) {
        let _: String = redis::cmd("ECHO")
            .arg(marker)
            .query_async(&mut self.markers.clone())
            .await
            .expect("ECHO");
    }

    /// Every line the server reported, once it has closed the monitor.
    async fn until_closed(self) -> Vec<String> {
        self.reader.await.expect("the reader ran");
        Arc::into_inner(self.lines)
            .expect("the reader is done")
            .into_inner()
            .expect("monitor lock")
    }
}

/// The commands of `lines` the stores under test sent (a session key of either side among the
/// arguments; commands of their scripts left out) between the line holding `from` and the one
/// holding `to` (or the end).
fn store_commands<'a>(lines: &'a [String], from: &str, to: Option<&str>) -> Vec<&'a str> {
    let start = lines
        .iter()
        .position(|line| line.contains(from))
        .unwrap_or_else(|| panic!("MONITOR never reported {from}"));
    let end = to.map_or(lines.len(), |to| {
        lines
            .iter()
            .position(|line| line.contains(to))
            .unwrap_or_else(|| panic!("MONITOR never reported {to}"))
    });
    lines[start..end]
        .iter()
        .filter(|line| !line.contains(" lua] "))
        .filter(|line| line.contains("\"plain:") || line.contains("\"durable:"))
        .map(String::as_str)
        .collect()
}

#[actix_web::test]
async fn a_demoted_primary_that_keeps_running_loses_nothing_acknowledged_after_the_switch() {
    const ASKED: &str = "marker-failover-asked";
    const SWITCHED: &str = "marker-switch-announced";
    let _alone = ALONE.lock().await;
    let sentinels = sentinels_failing_over_after(DOWN_AFTER);
    let old_primary = sentinels.primary().expect("a primary");
    let executed = Executed::start(&sentinels.servers()[old_primary]).await;
    let key = Key::generate();
    let (plain, durable) = sides_on(&sentinels, &key).await;
    let load = Load::new(key);
    // The load runs until the old primary is made a replica, so that its monitor covers every
    // moment it could take a write it would drop.
    let give_up = Instant::now() + BEFORE + Duration::from_secs(30);
    let running = || executed.closed().is_none() && Instant::now() < give_up;

    // Once the test hears the switch, and once a request the store sent before it heard the
    // same announcement has had time to arrive: from then on, the old primary must execute
    // nothing of the stores'.
    let announced = async {
        let switch = switch_announced(sentinels.sentinel_urls()[0].clone()).await;
        tokio::time::sleep(IN_FLIGHT).await;
        executed.mark(SWITCHED).await;
        switch
    };
    let mut asked = None;
    let fault = async {
        tokio::time::sleep(BEFORE).await;
        let mut sentinel = redis::Client::open(sentinels.sentinel_urls()[1].clone())
            .expect("a URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the sentinel answers");
        let () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(sentinels.master_name())
            .query_async(&mut sentinel)
            .await
            .expect("SENTINEL FAILOVER");
        asked = Some(Instant::now());
        executed.mark(ASKED).await;
    };
    let (switch, ()) = futures_util::join!(
        announced,
        under_load(&load, &plain, &durable, &running, fault)
    );
    let asked = asked.expect("the failover was asked for");
    let demoted = executed
        .closed()
        .expect("the old primary closed its MONITOR (became a replica) within 30 s");
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(
            &mut redis::Client::open(sentinels.servers()[old_primary].url())
                .expect("a URL")
                .get_multiplexed_async_connection()
                .await
                .expect("the old primary answers"),
        )
        .await
        .expect("INFO");
    assert!(
        info.contains("role:slave"),
        "the old primary's MONITOR closed while it was still a primary: {info}"
    );
    // Let the old primary resync: whatever it took alone is gone then.
    let new_primary = sentinels.wait_until_settled().expect("the setup settles");
    assert_ne!(new_primary, old_primary, "the failover happened");
    let lines = executed.until_closed().await;
    let checked = load.check(&plain, &durable).await;
    let records = load.take_records();

    println!("\nSentinel manual failover: {CLIENTS} clients, the old primary kept running");
    print_requests(&records, asked, demoted.duration_since(asked));
    println!(
        "switch announced {:?} after SENTINEL FAILOVER, the old primary made a replica {:?} after it",
        switch.duration_since(asked),
        demoted.duration_since(switch)
    );
    let until_switch = store_commands(&lines, ASKED, Some(SWITCHED));
    let after_switch = store_commands(&lines, SWITCHED, None);
    println!(
        "commands of the stores the old primary executed: {} from SENTINEL FAILOVER to the \
         switch (+{IN_FLIGHT:?}), {} after it until it became a replica",
        until_switch.len(),
        after_switch.len()
    );
    let tallies = tally_losses(&checked, switch);

    assert!(
        !until_switch.is_empty(),
        "the old primary's MONITOR saw none of the stores' commands before the switch"
    );
    assert!(
        after_switch.is_empty(),
        "the old primary executed {} commands of the stores after the switch was announced, \
         the first: {:?}",
        after_switch.len(),
        &after_switch[..after_switch.len().min(5)]
    );
    assert_nothing_acknowledged_lost(&tallies);
}

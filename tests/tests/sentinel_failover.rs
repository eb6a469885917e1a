//! The primary behind Sentinel killed, or demoted while it keeps running, under a steady stream
//! of logins, reads and writes: the store follows the new primary with no restart, and no login
//! or write it acknowledged after the switch is lost (with `WAIT`, none at all).
//!
//! Each test prints a table; `--nocapture` shows it.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use actix_web::cookie::Key;
use futures_util::{StreamExt as _, future::join_all};
use integration_tests::{
    failover::{Load, Record, Session, Side, sides},
    session_app::TestApp,
};
use local_redis::RedisSentinels;

const CLIENTS: usize = 8;
const BEFORE: Duration = Duration::from_secs(3);
/// How long the sentinels wait before they count a primary that does not answer as down.
const DOWN_AFTER: Duration = Duration::from_millis(1000);
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
    let (urls, master) = (sentinels.sentinel_urls(), sentinels.master_name());
    sides(key, &|builder| {
        builder
            .build_with_sentinel(urls.clone(), master)
            .expect("valid URLs")
    })
    .await
}

/// Runs the load on both sides until `until`, with `fault` happening meanwhile.
async fn under_load<A: TestApp, B: TestApp>(
    load: &Load,
    plain: &Side<A>,
    durable: &Side<B>,
    until: Instant,
    fault: impl Future<Output = ()>,
) {
    let clients = join_all((0..CLIENTS).map(|number| async move {
        if number % 2 == 0 {
            load.client(number, plain, until).await;
        } else {
            load.client(number, durable, until).await;
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

/// Prints and returns the logins and last writes lost, by side and by whether they were sent
/// before `switch` (with a margin for a request already in flight when the store heard of it):
/// `(durable, before switch) → (sessions, logins lost, writes lost)`.
fn print_losses(
    checked: &[(Session, bool, bool)],
    switch: Instant,
) -> BTreeMap<(bool, bool), (usize, usize, usize)> {
    let mut lost = BTreeMap::new();
    for (session, login_lost, write_lost) in checked {
        let last_sent = session
            .last_write
            .map_or(session.login_sent, |(_, sent)| sent);
        let entry: &mut (usize, usize, usize) = lost
            .entry((session.durable, last_sent < switch + IN_FLIGHT))
            .or_default();
        entry.0 += 1;
        entry.1 += usize::from(*login_lost);
        entry.2 += usize::from(*write_lost && !login_lost);
    }
    for ((durable, before), (count, logins, writes)) in &lost {
        println!(
            "sessions last written {} the switch, {}: {count}; lost: {logins} logins, {writes} last writes",
            if *before { "before" } else { "after" },
            if *durable {
                "with WAIT 1"
            } else {
                "without WAIT"
            },
        );
    }
    lost
}

#[actix_web::test]
async fn a_killed_primary_is_followed_with_no_restart() {
    let _alone = ALONE.lock().await;
    let mut sentinels = RedisSentinels::builder()
        .down_after(DOWN_AFTER)
        .start()
        .expect("a Sentinel setup starts");
    let key = Key::generate();
    let (plain, durable) = sides_on(&sentinels, &key).await;
    let load = Load::new(key);
    let after = Duration::from_secs(10);
    let until = Instant::now() + BEFORE + after;
    let old_primary = sentinels.primary().expect("a primary");

    let announced = switch_announced(sentinels.sentinel_urls()[0].clone());
    let mut killed = None;
    let fault = async {
        tokio::time::sleep(BEFORE).await;
        sentinels.stop_server(old_primary);
        killed = Some(Instant::now());
    };
    let (switch, ()) =
        futures_util::join!(announced, under_load(&load, &plain, &durable, until, fault));
    let killed = killed.expect("the primary was killed");
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
    let lost = print_losses(&checked, switch);

    assert!(unavailable_for > Duration::ZERO, "the failover went unseen");
    // The sentinels count the primary down after down-after-milliseconds, agree (quorum 2),
    // elect a leader and promote the replica: about two down-afters; the store then connects
    // to the new primary at once. With room for a busy machine: 3 × down-after + 3 s.
    assert!(
        unavailable_for < DOWN_AFTER * 3 + Duration::from_secs(3),
        "requests failed for {unavailable_for:?}"
    );
    for ((durable, before), (_, logins, writes)) in &lost {
        if *durable {
            assert_eq!(logins + writes, 0, "lost with WAIT");
        } else if !*before {
            assert_eq!(logins + writes, 0, "lost after the switch, without WAIT");
        }
    }
    assert!(
        plain_records
            .iter()
            .rev()
            .take(50)
            .all(|record| record.status == 200),
        "still failing at the end"
    );
}

#[actix_web::test]
async fn a_demoted_primary_that_keeps_running_loses_nothing_acknowledged_after_the_switch() {
    let _alone = ALONE.lock().await;
    let sentinels = RedisSentinels::builder()
        .down_after(DOWN_AFTER)
        .start()
        .expect("a Sentinel setup starts");
    let key = Key::generate();
    let (plain, durable) = sides_on(&sentinels, &key).await;
    let load = Load::new(key);
    let after = Duration::from_secs(8);
    let until = Instant::now() + BEFORE + after;

    let announced = switch_announced(sentinels.sentinel_urls()[0].clone());
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
    };
    let (switch, ()) =
        futures_util::join!(announced, under_load(&load, &plain, &durable, until, fault));
    let asked = asked.expect("the failover was asked for");
    // Let the old primary become a replica and resync: whatever it took alone is gone then.
    sentinels.wait_until_settled().expect("the setup settles");
    let checked = load.check(&plain, &durable).await;
    let records = load.take_records();

    println!("\nSentinel manual failover: {CLIENTS} clients, the old primary kept running");
    print_requests(&records, asked, after);
    println!(
        "switch announced {:?} after SENTINEL FAILOVER",
        switch.duration_since(asked)
    );
    let lost = print_losses(&checked, switch);

    for ((durable, before), (count, logins, writes)) in &lost {
        if *durable || !*before {
            assert!(*count > 0, "no sessions to check");
            assert_eq!(
                logins + writes,
                0,
                "acknowledged and lost (durable: {durable})"
            );
        }
    }
}

//! A bounded load-and-fault run: three demo instances behind one Redis (AOF, `appendfsync
//! always`) under a steady mix of logins, reads, profile writes and logouts; Redis is stopped
//! and restarted in the middle. Prints a table (run with `-- --nocapture` to see it) and checks
//! what a user relies on: only `503` (with `Retry-After`) while Redis is down, recovery within
//! seconds, no acknowledged session or write lost, no panic.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use actix_web::cookie::Cookie;
use integration_tests::{
    RedisServer,
    demo::{ApiClient, ApiResponse, Demo},
};
use serde_json::{Value, json};

/// Load before the outage, the outage, and load after it.
const BEFORE: Duration = Duration::from_secs(12);
const OUTAGE: Duration = Duration::from_secs(5);
const AFTER: Duration = Duration::from_secs(12);
/// Concurrent clients.
const CLIENTS: usize = 6;
/// How long a client waits after a `503`, as `Retry-After` asks (in part).
const BACKOFF: Duration = Duration::from_millis(100);

const PHASES: [&str; 3] = ["before", "outage", "after"];

/// One client's logged-in session, and what the store acknowledged for it.
struct Live {
    cookie: Cookie<'static>,
    user: &'static str,
    /// The display name last acknowledged with a `200`, and any written since without one
    /// (a write cut off by the outage may or may not have landed).
    acknowledged: Option<String>,
    unacknowledged: Vec<String>,
    /// Acknowledged before Redis was stopped.
    before_outage: bool,
}

#[derive(Default)]
struct Tally {
    /// Responses per phase and status ("error" when no HTTP answer came).
    statuses: BTreeMap<(usize, String), u64>,
    /// Slowest `503`.
    slowest_503: Duration,
    /// `503`s without `Retry-After`.
    without_retry_after: u64,
    /// `503`s that came back before Redis was stopped.
    early_503: u64,
    /// Reads of a live session that found no user, or another user.
    lost_reads: u64,
    /// First success of a request that needs Redis, per instance, after the restart.
    recovered: BTreeMap<usize, Instant>,
    /// Sessions that must still be logged in at the end: the clients' last ones, and those a
    /// client left behind to start another (without logging out).
    live: Vec<Live>,
    /// The cookies of sessions logged out (acknowledged) before Redis was stopped.
    logged_out_before: Vec<Cookie<'static>>,
}

struct Run<'a> {
    demo: &'a Demo,
    phase: AtomicU8,
    /// When Redis was stopped.
    stopped: OnceLock<Instant>,
    stop: AtomicBool,
    tally: Mutex<Tally>,
}

impl Run<'_> {
    /// Counts the answer to a request sent at `sent`, during `phase`.
    fn record(&self, phase: usize, instance: usize, sent: Instant, answer: Option<&ApiResponse>) {
        let mut tally = self.tally.lock().expect("not poisoned");
        let status = answer.map_or_else(|| "error".to_owned(), |a| a.status.to_string());
        *tally.statuses.entry((phase, status)).or_default() += 1;
        match answer {
            Some(answer) if answer.status == 503 => {
                tally.slowest_503 = tally.slowest_503.max(sent.elapsed());
                if self.stopped.get().is_none() {
                    tally.early_503 += 1;
                }
                if !answer.headers.contains_key("retry-after") {
                    tally.without_retry_after += 1;
                }
            }
            Some(answer) if answer.status == 200 && phase == 2 => {
                tally.recovered.entry(instance).or_insert_with(Instant::now);
            }
            _ => {}
        }
    }

    /// One client: logs in, then reads, writes its profile and now and then logs out, or
    /// leaves its session be and logs in again, on instances in turn, until told to stop.
    fn client(&self, number: usize) {
        let api = ApiClient::default();
        let user = if number.is_multiple_of(2) {
            "alice"
        } else {
            "bob"
        };
        let mut live: Option<Live> = None;
        let mut step = number;
        while !self.stop.load(Ordering::Acquire) {
            step += 1;
            let instance = step % 3;
            if step % 20 == 10
                && let Some(session) = live.take()
            {
                self.tally.lock().expect("not poisoned").live.push(session);
            }
            let (method, path, body) = match &live {
                None => (
                    "POST",
                    "/api/login",
                    Some(json!({"username": user, "password": format!("{user}-password")})),
                ),
                Some(_) if step.is_multiple_of(20) => ("POST", "/api/logout", None),
                Some(_) if step.is_multiple_of(4) => (
                    "PUT",
                    "/api/profile",
                    Some(json!({"display_name": format!("client {number} step {step}")})),
                ),
                Some(_) => ("GET", "/api/me", None),
            };
            let url = self.demo.url(instance, path);
            let cookie = live.as_ref().map(|live| &live.cookie);
            let phase = usize::from(self.phase.load(Ordering::Acquire));
            let sent = Instant::now();
            let answer = api.try_send(method, &url, cookie, body.as_ref()).ok();
            self.record(phase, instance, sent, answer.as_ref());
            if let (Some(session), Some(body)) = (&mut live, &body)
                && path == "/api/profile"
            {
                let name = body["display_name"].as_str().expect("a name").to_owned();
                if answer.as_ref().is_some_and(|answer| answer.status == 200) {
                    session.acknowledged = Some(name);
                    session.unacknowledged.clear();
                } else {
                    // Cut off by the outage, it may or may not have landed.
                    session.unacknowledged.push(name);
                }
            }
            let Some(answer) = answer else { continue };
            if answer.status == 503 {
                thread::sleep(BACKOFF);
                continue;
            }
            match (path, answer.status) {
                ("/api/login", 200) => {
                    live = Some(Live {
                        cookie: answer.cookie.expect("a session cookie"),
                        user,
                        acknowledged: None,
                        unacknowledged: Vec::new(),
                        before_outage: phase == 0,
                    });
                }
                ("/api/logout", 200) => {
                    if let Some(session) = live.take()
                        && phase == 0
                    {
                        let mut tally = self.tally.lock().expect("not poisoned");
                        tally.logged_out_before.push(session.cookie);
                    }
                }
                ("/api/me", 200) if answer.json["user"] != user => {
                    self.tally.lock().expect("not poisoned").lost_reads += 1;
                }
                _ => {}
            }
        }
        if let Some(session) = live {
            self.tally.lock().expect("not poisoned").live.push(session);
        }
    }
}

#[test]
fn three_instances_ride_out_a_redis_restart() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    // Each client leaves sessions live as it logs in again, hundreds of alice's and bob's in a
    // run: no cap on them, which would end the oldest (the users' tests prove the cap). The
    // logins under way when Redis stops keep counting against their account for the
    // throttle's lease (30 s): with three clients per account, up to six at once after the
    // restart, past the default limit of five (the throttle's tests prove the limit).
    let demo = Demo::launch(
        3,
        &[
            "--redis-url",
            &redis.url(),
            "--max-sessions-per-user",
            "1000000",
            "--max-failed-logins",
            "10",
        ],
    );
    let run = Run {
        demo: &demo,
        phase: AtomicU8::new(0),
        stopped: OnceLock::new(),
        stop: AtomicBool::new(false),
        tally: Mutex::default(),
    };
    let mut restarted = None;
    thread::scope(|scope| {
        for number in 0..CLIENTS {
            let run = &run;
            scope.spawn(move || run.client(number));
        }
        thread::sleep(BEFORE);
        run.phase.store(1, Ordering::Release);
        run.stopped.set(Instant::now()).expect("stopped once");
        redis.stop();
        thread::sleep(OUTAGE);
        redis.restart().expect("Redis restarts");
        restarted = Some(Instant::now());
        run.phase.store(2, Ordering::Release);
        thread::sleep(AFTER);
        run.stop.store(true, Ordering::Release);
    });
    let restarted = restarted.expect("the run restarted Redis");
    let tally = run.tally.into_inner().expect("not poisoned");

    // Every session still logged in reads back with its user and its last acknowledged write.
    let api = ApiClient::default();
    let (mut missing, mut missing_from_before, mut lost_writes) = (0, 0, 0);
    for session in &tally.live {
        let me = api.send(
            "GET",
            &demo.url(0, "/api/me"),
            Some(&session.cookie),
            None::<Value>,
        );
        if me.json["user"] != session.user {
            missing += 1;
            missing_from_before += u64::from(session.before_outage);
            continue;
        }
        let stored = me.json["display_name"].as_str().map(str::to_owned);
        let possible = session.unacknowledged.iter().cloned().map(Some);
        if !std::iter::once(session.acknowledged.clone())
            .chain(possible)
            .any(|name| name == stored)
        {
            lost_writes += 1;
        }
    }
    // Every session logged out before the outage stays logged out after it.
    let resurrected = tally
        .logged_out_before
        .iter()
        .filter(|cookie| {
            let me = api.send("GET", &demo.url(1, "/api/me"), Some(cookie), None::<Value>);
            !me.json["user"].is_null()
        })
        .count();
    let (_, output) = demo.stop();
    let panics = output
        .iter()
        .filter(|line| line.contains("panicked"))
        .count();
    let recovery = (0..3)
        .map(|instance| {
            tally
                .recovered
                .get(&instance)
                .map_or(AFTER, |at| at.duration_since(restarted))
        })
        .max()
        .expect("three instances");

    let before_outage = tally.live.iter().filter(|s| s.before_outage).count();
    print_table(
        &tally,
        recovery,
        before_outage,
        missing_from_before,
        lost_writes,
        panics,
    );
    println!(
        "sessions checked after the run: {} logged in, {} logged out before the outage \
         (back after it: {resurrected})",
        tally.live.len(),
        tally.logged_out_before.len()
    );

    let statuses = |phase: usize| {
        tally
            .statuses
            .iter()
            .filter(move |((p, _), _)| *p == phase)
            .map(|((_, status), count)| (status.as_str(), *count))
    };
    for phase in [0, 2] {
        assert!(
            statuses(phase).any(|(status, count)| status == "200" && count > 100),
            "too little load {}",
            PHASES[phase]
        );
    }
    for (phase, name) in PHASES.iter().enumerate() {
        for (status, count) in statuses(phase) {
            assert!(
                ["200", "503"].contains(&status),
                "{count} × {status} {name} the outage"
            );
        }
    }
    assert!(
        statuses(1).any(|(status, _)| status == "503"),
        "the outage went unseen"
    );
    let count = |phase: usize, wanted: &str| {
        statuses(phase)
            .filter(|(status, _)| *status == wanted)
            .map(|(_, count)| count)
            .sum::<u64>()
    };
    // Requests in flight when Redis stops fail with it; none before.
    assert_eq!(tally.early_503, 0, "503s before the outage");
    // After the restart, only requests that meet a connection to the old server fail: at most
    // those in flight, a few per client.
    let after = count(2, "503");
    assert!(
        after <= 3 * CLIENTS as u64,
        "{after} 503s after the restart"
    );
    assert_eq!(tally.without_retry_after, 0, "503s without Retry-After");
    assert!(
        tally.slowest_503 < Duration::from_secs(3),
        "a 503 took {:?}",
        tally.slowest_503
    );
    assert!(
        recovery < Duration::from_secs(5),
        "recovery took {recovery:?}"
    );
    assert_eq!(tally.lost_reads, 0, "reads of a live session found no user");
    // Checks that saw too little would prove little.
    assert!(
        tally.live.len() >= 100,
        "only {} sessions checked",
        tally.live.len()
    );
    assert!(
        before_outage >= 50,
        "only {before_outage} sessions from before the outage"
    );
    assert!(
        tally.logged_out_before.len() >= 20,
        "only {} logouts before the outage",
        tally.logged_out_before.len()
    );
    assert_eq!(resurrected, 0, "logged-out sessions back after the restart");
    assert_eq!(missing, 0, "acknowledged sessions lost");
    assert_eq!(lost_writes, 0, "acknowledged profile writes lost");
    assert_eq!(panics, 0, "panics:\n{}", output.join("\n"));
}

fn print_table(
    tally: &Tally,
    recovery: Duration,
    before_outage: usize,
    missing_from_before: u64,
    lost_writes: u64,
    panics: usize,
) {
    let total: u64 = tally.statuses.values().sum();
    println!("\nload and fault: {CLIENTS} clients, 3 instances, Redis AOF appendfsync always");
    println!(
        "{:<10} {:>8} {:>8} {:>8}",
        "phase", "requests", "200", "503"
    );
    for (phase, name) in PHASES.iter().enumerate() {
        let count = |status: &str| {
            tally
                .statuses
                .get(&(phase, status.to_owned()))
                .copied()
                .unwrap_or(0)
        };
        let all: u64 = tally
            .statuses
            .iter()
            .filter(|((p, _), _)| *p == phase)
            .map(|(_, count)| count)
            .sum();
        println!(
            "{name:<10} {all:>8} {:>8} {:>8}",
            count("200"),
            count("503")
        );
    }
    println!("{:<10} {total:>8}", "total");
    println!("other statuses or no answer: {:?}", other_statuses(tally));
    println!("slowest 503: {:?}", tally.slowest_503);
    println!("time to recover (all 3 instances): {recovery:?}");
    println!(
        "sessions acknowledged before the restart and still logged in: {before_outage}, \
         missing after it: {missing_from_before}"
    );
    println!("acknowledged profile writes lost: {lost_writes}");
    println!(
        "reads of a live session that found none: {}",
        tally.lost_reads
    );
    println!("panics: {panics}");
}

fn other_statuses(tally: &Tally) -> Vec<String> {
    tally
        .statuses
        .iter()
        .filter(|((_, status), _)| !["200", "503"].contains(&status.as_str()))
        .map(|((phase, status), count)| format!("{count} × {status} {}", PHASES[*phase]))
        .collect()
}

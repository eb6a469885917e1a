//! A flood of logins against one instance of the real demo binary: 64 clients log in as alice,
//! with her right password, as fast as the instance answers, for a few seconds.
//!
//! The instance's memory stays under its hashing threads' buffers plus a constant, every login
//! is answered within two seconds on a quiet machine (200, or 503 with `Retry-After`; on a
//! busy one, within three times what its queue takes at the rate it checks passwords), `/healthz` answers within 250 ms
//! throughout (or a quarter of the slowest login), and a login right after the flood works. One test alone in its file, so
//! that no other test of this binary shares the machine with it.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{
    RedisServer,
    demo::{ApiClient, Demo},
};
use serde_json::{Value, json};

/// Concurrent logins, as in the measurement.
const CLIENTS: usize = 64;

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(5);

/// The instance's hashing threads, given explicitly so the bound does not depend on the cores.
const HASH_THREADS: u64 = 2;

/// Logins that may wait for a hashing thread: fewer than the clients, so that part of the flood
/// is turned away, as a flood larger than the default queue (about a second of work) would be.
/// Those clients come back at once, as an attacker ignoring `Retry-After` would, and the
/// refusals then cost the instance more CPU than the logins do.
const LOGIN_QUEUE: &str = "32";

/// argon2id's default memory cost, which the demo's hashes use: 19 MiB.
const HASH_MEMORY: u64 = 19 * 1024 * 1024;

/// Everything an instance holds besides its hashing buffers: the (debug) binary's pages, the
/// allocator's arenas, actix's buffers for 64 connections, the Redis pool. An idle instance
/// holds about 15 MiB of it.
const EVERYTHING_ELSE: u64 = 32 * 1024 * 1024;

/// The slowest answer a login may get on a quiet machine.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The slowest answer the health check may get while the logins pour in, on a quiet machine.
const HEALTH_WITHIN: Duration = Duration::from_millis(250);

/// On a busy machine every password check is slower, and what the bound is about is that a
/// login waits no longer than the queue ahead of it takes at the rate the instance checks
/// passwords during the flood: its queue and threads' worth of logins, three times over for
/// the ups and downs of that rate.
const QUEUE_WAITS: u32 = 3;

const MIB: u64 = 1024 * 1024;

#[test]
fn a_login_flood_is_answered_quickly_in_bounded_memory() {
    let redis = RedisServer::start();
    let threads = HASH_THREADS.to_string();
    let demo = Demo::launch(
        1,
        &[
            "--redis-url",
            &redis.url(),
            "--hash-threads",
            &threads,
            "--login-queue",
            LOGIN_QUEUE,
            // The flood is alice's right password, all of it under way at once: limits above
            // the clients, so that the queue, not the throttle, meets it.
            "--max-failed-logins",
            "1000",
            "--max-failed-logins-per-address",
            "1000",
        ],
    );
    let pid = demo.pid(0);
    let idle = Memory::of(pid);
    let stop = AtomicBool::new(false);
    let (health_url, login_url) = (demo.url(0, "/healthz"), demo.url(0, "/api/login"));
    let login_url = login_url.as_str();

    let (logins, health, peak_rss) = thread::scope(|scope| {
        let health = scope.spawn(|| probe_health(&health_url, &stop));
        let memory = scope.spawn(|| sample_memory(pid, &stop));
        let until = Instant::now() + FLOOD;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| scope.spawn(move || log_in_until(login_url, until)))
            .collect();
        let logins = clients
            .into_iter()
            .map(|client| client.join().expect("a client thread"))
            .fold(Tally::default(), Tally::add);
        stop.store(true, Ordering::Relaxed);
        let health = health.join().expect("the health thread");
        (logins, health, memory.join().expect("the memory thread"))
    });
    let after = Memory::of(pid);
    let bound = HASH_THREADS * HASH_MEMORY + EVERYTHING_ELSE;

    println!(
        "{CLIENTS} clients for {FLOOD:?}: {} answers, {} logins (200, {:.0}/s), {} busy (503); \
         slowest answer {:?}; {} health checks, slowest {:?}",
        logins.ok + logins.busy + logins.other.len(),
        logins.ok,
        logins.ok as f64 / FLOOD.as_secs_f64(),
        logins.busy,
        logins.slowest,
        health.checks,
        health.slowest,
    );
    println!(
        "memory: idle {} MiB; peak VmRSS sampled {} MiB, VmHWM {} MiB, VmRSS after {} MiB; \
         bound {HASH_THREADS} threads x 19 MiB + {} MiB = {} MiB",
        idle.rss / MIB,
        peak_rss / MIB,
        after.hwm / MIB,
        after.rss / MIB,
        EVERYTHING_ELSE / MIB,
        bound / MIB,
    );

    assert!(
        logins.other.is_empty(),
        "answers other than 200 and 503: {:?}",
        logins.other
    );
    assert_eq!(
        logins.busy_malformed,
        Vec::<String>::new(),
        "503s without Retry-After: 1 or the JSON error that says why"
    );
    assert!(logins.ok > 0, "no login got through the flood");
    assert!(logins.busy > 0, "the flood never filled the queue");
    let per_second = logins.ok as f64 / FLOOD.as_secs_f64();
    let queue = LOGIN_QUEUE.parse::<f64>().expect("a number") + HASH_THREADS as f64;
    let answer_within = ANSWER_WITHIN.max(Duration::from_secs_f64(
        f64::from(QUEUE_WAITS) * queue / per_second,
    ));
    assert!(
        logins.slowest <= answer_within,
        "a login waited {:?}, over {answer_within:?} ({per_second:.0} logins/s)",
        logins.slowest
    );
    assert!(
        health.failures.is_empty(),
        "health checks failed: {:?}",
        health.failures
    );
    // The health check waits in no login queue: a small part of a login's wait, however
    // slow the machine.
    let health_within = HEALTH_WITHIN.max(logins.slowest / 4);
    assert!(
        health.slowest <= health_within,
        "a health check took {:?} during the flood, over {health_within:?}",
        health.slowest
    );
    assert!(
        after.hwm <= bound,
        "the instance peaked at {} MiB, over {} MiB",
        after.hwm / MIB,
        bound / MIB
    );

    let login = ApiClient::default().send(
        "POST",
        &demo.url(0, "/api/login"),
        None,
        Some(json!({"username": "alice", "password": "alice-password"})),
    );
    assert_eq!(
        login.status, 200,
        "a login right after the flood: {login:?}"
    );
    assert_eq!(login.json["user"], "alice");
}

/// What the logins of one or all clients got.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    busy: usize,
    /// `503`s without `Retry-After: 1` or without the JSON error that says why.
    busy_malformed: Vec<String>,
    /// Other statuses, and requests that got no answer at all.
    other: Vec<String>,
    slowest: Duration,
}

impl Tally {
    fn add(mut self, other: Self) -> Self {
        self.ok += other.ok;
        self.busy += other.busy;
        self.busy_malformed.extend(other.busy_malformed);
        self.other.extend(other.other);
        self.slowest = self.slowest.max(other.slowest);
        self
    }
}

/// One client: logs in as alice, again and again, until `until`.
fn log_in_until(url: &str, until: Instant) -> Tally {
    let api = ApiClient::default();
    let credentials = json!({"username": "alice", "password": "alice-password"});
    let mut tally = Tally::default();
    while Instant::now() < until {
        let sent = Instant::now();
        let answer = api.try_send("POST", url, None, Some(&credentials));
        tally.slowest = tally.slowest.max(sent.elapsed());
        match answer {
            Ok(answer) if answer.status == 200 => tally.ok += 1,
            Ok(answer) if answer.status == 503 => {
                tally.busy += 1;
                let says_when = answer.headers.get("retry-after").map(String::as_str) == Some("1");
                let says_why = answer.json["error"]
                    .as_str()
                    .is_some_and(|error| error.contains("too many logins at once"));
                if !(says_when && says_why) {
                    tally
                        .busy_malformed
                        .push(format!("{:?} {}", answer.headers, answer.json));
                }
            }
            Ok(answer) => tally
                .other
                .push(format!("{} {}", answer.status, answer.json)),
            Err(err) => tally.other.push(format!("no answer: {err}")),
        }
    }
    tally
}

/// The health checks made during the flood.
#[derive(Debug, Default)]
struct Health {
    checks: usize,
    failures: Vec<String>,
    slowest: Duration,
}

/// Asks `/healthz` every 50 ms until `stop`.
fn probe_health(url: &str, stop: &AtomicBool) -> Health {
    let api = ApiClient::default();
    let mut health = Health::default();
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let answer = api.try_send("GET", url, None, None::<Value>);
        health.slowest = health.slowest.max(sent.elapsed());
        health.checks += 1;
        match answer {
            Ok(answer) if answer.status == 200 => {}
            Ok(answer) => health.failures.push(format!("{answer:?}")),
            Err(err) => health.failures.push(err.to_string()),
        }
        thread::sleep(Duration::from_millis(50));
    }
    health
}

/// The highest resident memory seen every 20 ms until `stop` (beside the kernel's own high
/// water mark, which catches what sampling misses).
fn sample_memory(pid: u32, stop: &AtomicBool) -> u64 {
    let mut peak = 0;
    while !stop.load(Ordering::Relaxed) {
        peak = peak.max(Memory::of(pid).rss);
        thread::sleep(Duration::from_millis(20));
    }
    peak
}

/// A process's resident memory, from `/proc/<pid>/status`, in bytes.
struct Memory {
    /// `VmRSS`: resident now.
    rss: u64,
    /// `VmHWM`: the most it was ever resident.
    hwm: u64,
}

impl Memory {
    fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|err| panic!("cannot read the status of {pid}: {err}"));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.trim().strip_suffix(" kB"))
                .and_then(|kib| kib.trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        Self {
            rss: field("VmRSS:"),
            hwm: field("VmHWM:"),
        }
    }
}

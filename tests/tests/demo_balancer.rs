//! The demo behind its load balancer (nginx, started by the launcher on a free port): one
//! address, requests spread over the instances, an instance killed and nobody logged out, and
//! an unavailable Redis's 503 passed on as the instances give it.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use actix_web::cookie::Cookie;
use integration_tests::{
    RedisServer,
    demo::{ApiClient, ApiResponse, Demo},
};
use nix::{sys::signal, unistd::Pid};
use serde_json::{Value, json};

const NO_BODY: Option<Value> = None;

/// Logs alice in through the balancer and returns her session cookie.
fn alice_logs_in(api: &ApiClient, demo: &Demo) -> Cookie<'static> {
    let login = api.send(
        "POST",
        &demo.balancer_url("/api/login"),
        None,
        Some(json!({"username": "alice", "password": "alice-password"})),
    );
    assert_eq!(login.status, 200, "{login:?}");
    login.cookie.expect("a session cookie")
}

fn me(api: &ApiClient, demo: &Demo, cookie: &Cookie<'_>) -> ApiResponse {
    api.send("GET", &demo.balancer_url("/api/me"), Some(cookie), NO_BODY)
}

/// The port of the instance that answered, after checking it answered as alice.
fn served_alice(answer: &ApiResponse) -> u16 {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json["user"], "alice", "{answer:?}");
    answer.json["instance"]
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
        .expect("the instance's port")
}

#[test]
fn requests_through_the_balancer_are_spread_over_the_instances_all_as_alice() {
    let demo = Demo::launch_with_balancer(3, &[]);
    let api = ApiClient::default();
    let cookie = alice_logs_in(&api, &demo);
    let instances: BTreeSet<u16> = (0..12)
        .map(|_| served_alice(&me(&api, &demo, &cookie)))
        .collect();
    assert!(
        instances.len() >= 2,
        "12 requests all came from {instances:?}"
    );
    assert!(instances.iter().all(|port| demo.ports().contains(port)));
}

#[test]
fn an_instance_killed_while_alice_is_signed_in_logs_nobody_out_and_comes_back() {
    let demo = Demo::launch_with_balancer(3, &[]);
    let api = ApiClient::default();
    let cookie = alice_logs_in(&api, &demo);
    let victim = demo.ports()[1];
    let old_pid = demo.pid(1);

    let killed = Instant::now();
    signal::kill(
        Pid::from_raw(i32::try_from(old_pid).expect("a pid")),
        signal::Signal::SIGKILL,
    )
    .expect("the instance is killed");
    let meanwhile: BTreeSet<u16> = (0..12)
        .map(|_| served_alice(&me(&api, &demo, &cookie)))
        .collect();
    assert!(
        !meanwhile.contains(&victim),
        "a dead instance answered: {meanwhile:?}"
    );
    assert_eq!(meanwhile.len(), 2, "the other two serve: {meanwhile:?}");

    let new_pid = demo.restarted_pid(1, old_pid, Duration::from_secs(15));
    let restarted = killed.elapsed();
    assert!(
        demo.wait_for_line(
            &format!("The instance on port {victim} exited"),
            Duration::ZERO
        )
        .is_some(),
        "the launcher said nothing of the death:\n{}",
        demo.output().join("\n")
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answers = 0;
    while served_alice(&me(&api, &demo, &cookie)) != victim {
        answers += 1;
        assert!(
            Instant::now() < deadline,
            "instance {victim} (pid {new_pid}) did not rejoin within 20 s:\n{}",
            demo.output().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "started again {restarted:?} after the kill, as pid {new_pid}; back in the rotation \
         {:?} after the kill ({answers} answers from the others before it)",
        killed.elapsed()
    );
}

#[test]
fn with_redis_stopped_the_client_gets_the_instances_503_not_a_502() {
    // Kept on disk, so that alice's session outlives the restart.
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let demo = Demo::launch_with_balancer(2, &["--redis-url", &redis.url()]);
    let api = ApiClient::default();
    let cookie = alice_logs_in(&api, &demo);

    redis.stop();
    // More requests than instances: had a 503 marked an instance down, nginx would run out of
    // instances and answer 502 of its own.
    for _ in 0..6 {
        let answer = me(&api, &demo, &cookie);
        assert_eq!(answer.status, 503, "{answer:?}");
        assert_eq!(
            answer.headers.get("retry-after").map(String::as_str),
            Some("1"),
            "{answer:?}"
        );
    }
    redis.restart().expect("Redis restarts");
    served_alice(&me(&api, &demo, &cookie));
}

#[test]
fn only_the_balancers_own_entry_in_x_forwarded_for_names_the_client() {
    // The launcher's balancer has a secret of its own, not the tests'.
    let demo = Demo::launch_with_balancer(1, &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let log_in = |url: &str| {
        let answer = agent
            .post(url)
            .header("x-forwarded-for", "203.0.113.9")
            .send_json(json!({"username": "bob", "password": "bob-password"}))
            .expect("an answer");
        assert_eq!(answer.status(), 200);
    };

    // Through nginx, the header the client wrote is followed by the address nginx saw.
    log_in(&demo.balancer_url("/api/login"));
    let line = demo
        .wait_for_line("signed in user=bob", Duration::from_secs(5))
        .expect("a login log line");
    assert!(line.contains("client=127.0.0.1"), "{line}");

    // Straight to the instance's own port, from loopback as nginx is, the header names
    // nobody: only nginx's requests carry the launcher's secret for this run.
    log_in(&demo.url(0, "/api/login"));
    std::thread::sleep(Duration::from_millis(500));
    let lines: Vec<String> = demo
        .output()
        .into_iter()
        .filter(|line| line.contains("signed in user=bob"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().all(|line| line.contains("client=127.0.0.1")),
        "{lines:?}"
    );
}

/// What one client of [`an_instance_killed_with_requests_in_flight_fails_only_those_writes_and_halves_none`] sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Login,
    Write,
    Read,
}

/// One request: what, when it was sent and answered, the status (0 when no HTTP answer came).
struct Sent {
    kind: Kind,
    sent: Instant,
    answered: Instant,
    status: u16,
}

/// One session a client was given, with the display names it wrote: the last one answered
/// `200`, and those sent after it that got another answer.
struct Written {
    cookie: Cookie<'static>,
    acknowledged: Option<String>,
    unacknowledged: Vec<String>,
}

/// A client through the balancer until `stop`: logs alice in, then writes her display name
/// and reads `/api/me` in turn five times, and again.
fn balanced_client(
    api: &ApiClient,
    demo: &Demo,
    number: usize,
    stop: &AtomicBool,
) -> (Vec<Sent>, Vec<Written>) {
    let (mut sent, mut written) = (Vec::new(), Vec::new());
    let mut record = |kind, started: Instant, status| {
        sent.push(Sent {
            kind,
            sent: started,
            answered: Instant::now(),
            status,
        });
    };
    let mut step = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let login = api.try_send(
            "POST",
            &demo.balancer_url("/api/login"),
            None,
            Some(json!({"username": "alice", "password": "alice-password"})),
        );
        let status = login.as_ref().map_or(0, |answer| answer.status);
        record(Kind::Login, started, status);
        let Some(cookie) = login.ok().and_then(|answer| answer.cookie) else {
            continue;
        };
        let mut session = Written {
            cookie,
            acknowledged: None,
            unacknowledged: Vec::new(),
        };
        for _ in 0..5 {
            step += 1;
            let name = format!("client {number} step {step}");
            let started = Instant::now();
            let status = api
                .try_send(
                    "PUT",
                    &demo.balancer_url("/api/profile"),
                    Some(&session.cookie),
                    Some(json!({ "display_name": name })),
                )
                .map_or(0, |answer| answer.status);
            record(Kind::Write, started, status);
            if status == 200 {
                session.acknowledged = Some(name);
                session.unacknowledged.clear();
            } else {
                session.unacknowledged.push(name);
            }
            let started = Instant::now();
            let status = api
                .try_send(
                    "GET",
                    &demo.balancer_url("/api/me"),
                    Some(&session.cookie),
                    NO_BODY,
                )
                .map_or(0, |answer| answer.status);
            record(Kind::Read, started, status);
        }
        written.push(session);
    }
    (sent, written)
}

/// An instance killed while logins, writes and reads are in flight on it. nginx sends a read
/// that the dead instance did not answer on to another instance, so every read gets its `200`.
/// It does not resend a login or a write (`POST`, `PUT`) that reached the instance, since it
/// cannot know whether it took effect: the client gets nginx's `502`. Such a write landed
/// whole or not at all: the display name read back afterwards is the last one acknowledged or
/// one of those answered otherwise since, and every session given out is still signed in.
#[test]
fn an_instance_killed_with_requests_in_flight_fails_only_those_writes_and_halves_none() {
    const CLIENTS: usize = 6;
    const BURST: usize = 12;
    // One password check at a time per instance, so that logins wait their turn; bob's burst
    // of logins all under way at once, which his throttle's limit would otherwise refuse past
    // five, and well over a hundred sessions of alice's kept, which the session cap would
    // otherwise end (the users' tests prove both).
    let demo = Demo::launch_with_balancer(
        3,
        &[
            "--hash-threads",
            "1",
            "--login-queue",
            "64",
            "--max-failed-logins",
            "100",
            "--max-sessions-per-user",
            "1000000",
        ],
    );
    let stop = AtomicBool::new(false);
    let mut killed = None;
    let results = thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|number| {
                let (demo, stop) = (&demo, &stop);
                scope.spawn(move || balanced_client(&ApiClient::default(), demo, number, stop))
            })
            .collect();
        thread::sleep(Duration::from_millis(1500));
        // A burst of logins, a few per instance, each instance checking one password at a
        // time: the victim dies with some of them still waiting their turn.
        let burst: Vec<_> = (0..BURST)
            .map(|_| {
                let demo = &demo;
                scope.spawn(move || {
                    let started = Instant::now();
                    let status = ApiClient::default()
                        .try_send(
                            "POST",
                            &demo.balancer_url("/api/login"),
                            None,
                            Some(json!({"username": "bob", "password": "bob-password"})),
                        )
                        .map_or(0, |answer| answer.status);
                    Sent {
                        kind: Kind::Login,
                        sent: started,
                        answered: Instant::now(),
                        status,
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(30));
        signal::kill(
            Pid::from_raw(i32::try_from(demo.pid(1)).expect("a pid")),
            signal::Signal::SIGKILL,
        )
        .expect("the instance is killed");
        killed = Some(Instant::now());
        thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        let mut results: Vec<_> = clients
            .into_iter()
            .map(|client| client.join().expect("the client does not panic"))
            .collect();
        let burst = burst
            .into_iter()
            .map(|login| login.join().expect("no panic"));
        results.push((burst.collect(), Vec::new()));
        results
    });
    let killed = killed.expect("the kill happened");
    let (sent, written): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    let sent: Vec<Sent> = sent.into_iter().flatten().collect();

    let mut statuses = BTreeMap::<(Kind, bool, u16), usize>::new();
    for request in &sent {
        let in_flight = request.sent <= killed && killed <= request.answered;
        *statuses
            .entry((request.kind, in_flight, request.status))
            .or_default() += 1;
    }
    println!(
        "{:<6} {:<10} {:>6} {:>6}",
        "kind", "in flight", "status", "count"
    );
    for ((kind, in_flight, status), count) in &statuses {
        println!(
            "{:<6} {:<10} {status:>6} {count:>6}",
            format!("{kind:?}"),
            if *in_flight { "at kill" } else { "" }
        );
    }
    for (&(kind, _, status), count) in &statuses {
        let expected: &[u16] = match kind {
            Kind::Read => &[200],
            Kind::Login | Kind::Write => &[200, 502],
        };
        assert!(
            expected.contains(&status),
            "{count} {kind:?} requests got {status}: {statuses:?}"
        );
    }
    assert!(
        statuses.keys().any(|&(_, _, status)| status == 502),
        "no request was in flight on the killed instance: {statuses:?}"
    );

    let api = ApiClient::default();
    let sessions: Vec<Written> = written.into_iter().flatten().collect();
    for session in &sessions {
        let me = me(&api, &demo, &session.cookie);
        assert_eq!(me.json["user"], "alice", "a session was lost: {me:?}");
        let name = me.json["display_name"].as_str().map(str::to_owned);
        assert!(
            name == session.acknowledged
                || session
                    .unacknowledged
                    .iter()
                    .any(|n| name.as_ref() == Some(n)),
            "display name {name:?}, where the last acknowledged was {:?} and those unanswered \
             since {:?}",
            session.acknowledged,
            session.unacknowledged
        );
    }
    assert!(sessions.len() >= CLIENTS, "{} sessions", sessions.len());
}

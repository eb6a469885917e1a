//! The demo behind its load balancer (nginx, started by the launcher on a free port): one
//! address, requests spread over the instances, an instance killed and nobody logged out, and
//! an unavailable Redis's 503 passed on as the instances give it.

use std::{
    collections::BTreeSet,
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
            "instance {victim} (pid {new_pid}) did not rejoin within 20 s"
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

    // Straight from a loopback peer, as the balancer's own requests come, the header counts.
    log_in(&demo.url(0, "/api/login"));
    let line = demo
        .wait_for_line("client=203.0.113.9", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", demo.output().join("\n")));
    assert!(line.contains("signed in user=bob"), "{line}");
}

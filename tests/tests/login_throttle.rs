//! The demo's login throttle against a burst: 64 wrong passwords for one account at once,
//! spread over three instances of the real binary, with a limit of 5. The throttle takes each
//! login's attempt before its password is checked, in one step with the limit test, so no
//! more than 5 passwords are checked however the logins overlap, and the right one waits for
//! the window like the wrong ones.

use std::{
    thread,
    time::{Duration, Instant},
};

use integration_tests::{
    demo::{ApiClient, ApiResponse, Demo},
    prometheus::Exposition,
};
use serde_json::json;

/// Long enough for the burst and the checks that follow it on a busy machine; the wait for its
/// end is read from `Retry-After`.
const WINDOW: u64 = 20;

const BURST: usize = 64;

fn log_in(api: &ApiClient, demo: &Demo, index: usize, password: &str) -> ApiResponse {
    api.send(
        "POST",
        &demo.url(index, "/api/login"),
        None,
        Some(json!({"username": "alice", "password": password})),
    )
}

/// The passwords all instances have checked, by their own count.
fn password_checks(api: &ApiClient, demo: &Demo) -> f64 {
    (0..demo.ports().len())
        .map(|index| {
            let metrics = api.call("GET", demo, index, "/metrics", None);
            assert_eq!(metrics.status, 200, "{metrics:?}");
            Exposition::parse(&metrics.text)
                .expect("the metrics format")
                .sum("demo_password_checks_total", &[])
        })
        .sum()
}

#[test]
fn a_burst_of_wrong_passwords_over_three_instances_checks_no_more_than_the_limit() {
    let demo = Demo::launch(
        3,
        &[
            "--max-failed-logins",
            "5",
            "--failed-login-window",
            &WINDOW.to_string(),
        ],
    );
    // An address of the test's own (named as the balancer names the client), far from its
    // limit of 50.
    let api = ApiClient::default().forwarding_for("198.51.100.20");
    assert_eq!(
        password_checks(&api, &demo),
        0.0,
        "a fresh demo checked none"
    );

    let started = Instant::now();
    let statuses: Vec<u16> = thread::scope(|scope| {
        let logins: Vec<_> = (0..BURST)
            .map(|n| {
                let (api, demo) = (&api, &demo);
                scope.spawn(move || log_in(api, demo, n % 3, &format!("guess{n}")).status)
            })
            .collect();
        logins
            .into_iter()
            .map(|login| login.join().expect("a login thread"))
            .collect()
    });
    let count = |status| statuses.iter().filter(|&&s| s == status).count();
    let (wrong, throttled, busy) = (count(401), count(429), count(503));
    let checks = password_checks(&api, &demo);
    println!(
        "{BURST} wrong passwords at once: {wrong} × 401, {throttled} × 429, {busy} × 503; \
         {checks} password checks, in {:?}",
        started.elapsed()
    );
    assert_eq!(
        wrong + throttled + busy,
        BURST,
        "other answers: {statuses:?}"
    );
    assert!((1..=5).contains(&wrong), "{wrong} wrong passwords checked");
    assert_eq!(
        checks, wrong as f64,
        "every check answered 401, and only checks did"
    );

    // The right password waits for the window too, on every instance.
    let mut waits = Vec::new();
    for index in 0..3 {
        let answer = log_in(&api, &demo, index, "alice-password");
        assert_eq!(answer.status, 429, "instance {index}: {answer:?}");
        assert!(answer.cookie.is_none(), "{answer:?}");
        let wait = answer.retry_after();
        assert!((1..=WINDOW).contains(&wait), "Retry-After {wait}");
        waits.push(wait);
    }
    assert_eq!(
        password_checks(&api, &demo),
        checks,
        "no check while throttled"
    );

    thread::sleep(
        Duration::from_secs(*waits.iter().max().expect("waits")) + Duration::from_millis(300),
    );
    let after = log_in(&api, &demo, 1, "alice-password");
    assert_eq!(after.status, 200, "the window is over: {after:?}");
}

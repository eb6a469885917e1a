//! A user's sessions through the real demo binary, three instances on one Redis: alice's
//! devices listed and logged out one by one, everywhere else and everywhere, with the index in
//! Redis read directly after every step; the lifecycle events of every instance reaching a
//! browser's event stream in order, across a Redis restart; failed logins spread over the
//! instances throttled as one count.

use std::{
    thread,
    time::{Duration, Instant, SystemTime},
};

use actix_web::cookie::Cookie;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use integration_tests::{
    RedisServer,
    demo::{ApiClient, ApiResponse, Demo},
    sse::{EventStream, NoEvent},
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

fn password_of(user: &str) -> String {
    format!("{user}-password")
}

/// `POST /api/login` of `user` with the right password on instance `index`.
fn post_login(api: &ApiClient, demo: &Demo, index: usize, user: &str) -> ApiResponse {
    api.send(
        "POST",
        &demo.url(index, "/api/login"),
        None,
        Some(json!({"username": user, "password": password_of(user)})),
    )
}

/// The session cookie of `login`, which must have succeeded.
fn cookie_of(login: ApiResponse) -> Cookie<'static> {
    assert_eq!(login.status, 200, "{login:?}");
    login.cookie.expect("a session cookie")
}

/// Logs `user` in on instance `index`; the session cookie.
fn log_in(api: &ApiClient, demo: &Demo, index: usize, user: &str) -> Cookie<'static> {
    cookie_of(post_login(api, demo, index, user))
}

/// `send`'s answer, right after a Redis restart: the first requests of an instance to meet a
/// pooled connection to the old server get `503` with `Retry-After`, and are sent again, as
/// a client would.
fn after_restart(send: impl Fn() -> ApiResponse) -> ApiResponse {
    for _ in 0..10 {
        let answer = send();
        if answer.status != 503 {
            return answer;
        }
        thread::sleep(Duration::from_millis(200));
    }
    panic!("still 503 2 s after the restart");
}

/// Like [`log_in`], right after a Redis restart.
fn log_in_after_restart(api: &ApiClient, demo: &Demo, index: usize, user: &str) -> Cookie<'static> {
    cookie_of(after_restart(|| post_login(api, demo, index, user)))
}

/// `GET /api/sessions` on instance `index`, as the JSON array it must be.
fn list(api: &ApiClient, demo: &Demo, index: usize, cookie: &Cookie<'_>) -> Vec<Value> {
    let answer = api.call("GET", demo, index, "/api/sessions", Some(cookie));
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.json.as_array().expect("a JSON array").clone()
}

/// The reference of the session of `cookie`, as its own listing marks it.
fn reference_of(api: &ApiClient, demo: &Demo, cookie: &Cookie<'_>) -> String {
    let listed = list(api, demo, 0, cookie);
    let own: Vec<&Value> = listed.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(own.len(), 1, "one session is the caller's: {listed:?}");
    own[0]["reference"]
        .as_str()
        .expect("a reference")
        .to_owned()
}

/// Who instance `index` takes `cookie` for.
fn user_on(api: &ApiClient, demo: &Demo, index: usize, cookie: &Cookie<'_>) -> Value {
    let me = api.call("GET", demo, index, "/api/me", Some(cookie));
    assert_eq!(me.status, 200, "{me:?}");
    me.json["user"].clone()
}

fn assert_anonymous_everywhere(api: &ApiClient, demo: &Demo, cookie: &Cookie<'_>, what: &str) {
    for index in 0..demo.ports().len() {
        assert_eq!(
            user_on(api, demo, index, cookie),
            Value::Null,
            "{what}: instance {index} still knows the session"
        );
    }
}

/// The digests in `user`'s index, read straight from Redis: the demo's prefix is `demo:`, the
/// index `demo:u:{base64url(sha256(user as JSON))}`.
fn index_of(redis: &RedisServer, user: &str) -> Vec<String> {
    let stored = serde_json::to_string(user).expect("JSON");
    let key = format!("demo:u:{}", URL_SAFE_NO_PAD.encode(Sha256::digest(stored)));
    let mut redis = redis.client().get_connection().expect("the test's Redis");
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query(&mut redis)
        .expect("ZRANGE")
}

/// Checks that alice's index names exactly the sessions of `references`, each of them live:
/// no ended session stays in it.
fn assert_index_holds(redis: &RedisServer, references: &[&str], what: &str) {
    let digests = index_of(redis, "alice");
    let mut indexed: Vec<&str> = digests.iter().map(|digest| &digest[..12]).collect();
    let mut expected = references.to_vec();
    indexed.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        indexed, expected,
        "{what}: the index is not the live sessions"
    );
    let mut connection = redis.client().get_connection().expect("the test's Redis");
    for digest in &digests {
        let live: bool = redis::cmd("EXISTS")
            .arg(format!("demo:s:{digest}"))
            .query(&mut connection)
            .expect("EXISTS");
        assert!(live, "{what}: the index names an ended session {digest}");
    }
}

/// `DELETE /api/sessions/{reference}` on instance `index` as the holder of `cookie`.
fn revoke(
    api: &ApiClient,
    demo: &Demo,
    index: usize,
    cookie: &Cookie<'static>,
    reference: &str,
) -> ApiResponse {
    let path = format!("/api/sessions/{reference}");
    api.call("DELETE", demo, index, &path, Some(cookie))
}

fn parse_time(value: &Value) -> SystemTime {
    let text = value.as_str().expect("a time");
    humantime::parse_rfc3339(text).unwrap_or_else(|err| panic!("{text}: {err}"))
}

#[test]
fn alice_lists_her_devices_and_logs_them_out_one_by_one_everywhere_else_and_everywhere() {
    let mut redis = RedisServer::start();
    let demo = Demo::launch(3, &["--redis-url", &redis.url()]);
    let ports = demo.ports().to_vec();
    let laptop = ApiClient::default().with_header("user-agent", "laptop/1.0");
    let phone = ApiClient::default().with_header("user-agent", "phone/2.0");
    let api = ApiClient::default();
    let started = SystemTime::now() - Duration::from_secs(1);

    let a = log_in(&laptop, &demo, 0, "alice");
    let b = log_in(&phone, &demo, 1, "alice");
    let bob = log_in(&api, &demo, 2, "bob");

    // A asks a third instance: two sessions, oldest first, its own marked.
    let listed = list(&laptop, &demo, 2, &a);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let (own, other) = (&listed[0], &listed[1]);
    assert_eq!(own["current"], true, "{listed:?}");
    assert_eq!(other["current"], false, "{listed:?}");
    assert_eq!(own["user_agent"], "laptop/1.0");
    assert_eq!(other["user_agent"], "phone/2.0");
    assert_eq!(own["instance"], ports[0], "the instance of the login");
    assert_eq!(other["instance"], ports[1]);
    let now = SystemTime::now() + Duration::from_secs(1);
    for session in &listed {
        let (created, last_seen, expires) = (
            parse_time(&session["created"]),
            parse_time(&session["last_seen"]),
            parse_time(&session["expires"]),
        );
        assert!(started <= created && created <= last_seen && last_seen <= now);
        assert!(expires > now + Duration::from_secs(60), "{session:?}");
    }
    let a_ref = own["reference"].as_str().expect("a reference").to_owned();
    let b_ref = other["reference"].as_str().expect("a reference").to_owned();
    assert_index_holds(&redis, &[&a_ref, &b_ref], "after two logins");

    // A logs B out; B's next request is anonymous on every instance.
    let revoked = revoke(&laptop, &demo, 0, &a, &b_ref);
    assert_eq!(revoked.status, 204, "{revoked:?}");
    assert_anonymous_everywhere(&phone, &demo, &b, "revoked");
    assert_index_holds(&redis, &[&a_ref], "after the revocation");
    let again = revoke(&laptop, &demo, 1, &a, &b_ref);
    assert_eq!(again.status, 404, "an ended session: {again:?}");
    let bob_ref = reference_of(&api, &demo, &bob);
    let not_hers = revoke(&laptop, &demo, 1, &a, &bob_ref);
    assert_eq!(not_hers.status, 404, "bob's session: {not_hers:?}");
    assert_eq!(user_on(&api, &demo, 0, &bob), "bob");

    // Everywhere else: two more devices, and only A is left.
    let b2 = log_in(&phone, &demo, 1, "alice");
    let c = log_in(&api, &demo, 2, "alice");
    let others = laptop.call("POST", &demo, 1, "/api/sessions/revoke-others", Some(&a));
    assert_eq!(others.status, 200, "{others:?}");
    assert_eq!(others.json, json!({"revoked": 2}));
    assert_anonymous_everywhere(&phone, &demo, &b2, "revoked as another");
    assert_anonymous_everywhere(&api, &demo, &c, "revoked as another");
    let listed = list(&laptop, &demo, 2, &a);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["reference"], a_ref.as_str());
    assert_index_holds(&redis, &[&a_ref], "after everywhere else");

    // A logout and a renewal (a login over A's own session) leave the index at once.
    let d = log_in(&api, &demo, 0, "alice");
    let logout = api.call("POST", &demo, 1, "/api/logout", Some(&d));
    assert_eq!(logout.status, 200);
    assert_index_holds(&redis, &[&a_ref], "after a logout");
    let renewal = laptop.send(
        "POST",
        &demo.url(2, "/api/login"),
        Some(&a),
        Some(json!({"username": "alice", "password": "alice-password"})),
    );
    assert_eq!(renewal.status, 200, "{renewal:?}");
    let a2 = renewal.cookie.expect("a renewed cookie");
    assert_anonymous_everywhere(&laptop, &demo, &a, "renewed away");
    let a2_ref = reference_of(&laptop, &demo, &a2);
    assert_ne!(a2_ref, a_ref);
    assert_index_holds(&redis, &[&a2_ref], "after a renewal");

    // Log out everywhere: none left, this one included.
    let e = log_in(&api, &demo, 1, "alice");
    let everywhere = laptop.call("POST", &demo, 0, "/api/logout-everywhere", Some(&a2));
    assert_eq!(everywhere.status, 200, "{everywhere:?}");
    assert_eq!(everywhere.json, json!({"revoked": 2}));
    assert_eq!(
        everywhere
            .headers
            .get("clear-site-data")
            .map(String::as_str),
        Some("\"cookies\"")
    );
    assert_anonymous_everywhere(&laptop, &demo, &a2, "logged out everywhere");
    assert_anonymous_everywhere(&api, &demo, &e, "logged out everywhere");
    assert_index_holds(&redis, &[], "after everywhere");
    assert_eq!(user_on(&api, &demo, 2, &bob), "bob", "bob untouched");

    // Not signed in: 401 from every one of them.
    let anonymous = [
        ("GET", "/api/sessions"),
        ("DELETE", "/api/sessions/abcdefabcdef"),
        ("POST", "/api/sessions/revoke-others"),
        ("POST", "/api/logout-everywhere"),
        ("GET", "/api/events"),
    ];
    for (method, path) in anonymous {
        for cookie in [None, Some(&a2)] {
            let answer = api.call(method, &demo, 0, path, cookie);
            assert_eq!(answer.status, 401, "{method} {path}: {answer:?}");
        }
    }

    // Redis down: 503 with Retry-After, and the list again once it is back.
    redis.stop();
    for (method, path) in [("GET", "/api/sessions"), ("DELETE", "/api/sessions/x")] {
        let answer = api.call(method, &demo, 1, path, Some(&bob));
        assert_eq!(answer.status, 503, "{method} {path}: {answer:?}");
        assert_eq!(answer.retry_after(), 1);
    }
    redis.restart().expect("Redis restarts");
    let bob = log_in_after_restart(&api, &demo, 2, "bob");
    assert_eq!(list(&api, &demo, 1, &bob).len(), 1);
}

/// Logs `probe` in on instance `index` until `events` shows its login: then the instance
/// behind `events` has subscribed (it does so in the background as it starts).
fn wait_until_live(api: &ApiClient, demo: &Demo, events: &EventStream) {
    for _ in 0..40 {
        log_in(api, demo, 0, "bob");
        let seen = events.next_matching(Duration::from_millis(500), |event| {
            event["event"] == "created" && event["user"] == "bob"
        });
        match seen {
            Ok(_) => return,
            Err(NoEvent::Timeout) => {}
            Err(NoEvent::Ended) => panic!("the event stream ended"),
        }
    }
    panic!("no event reached the stream within 40 logins");
}

/// Waits until instance `port` has logged a line with `text`.
fn wait_for_log(demo: &Demo, port: u16, text: &str) {
    let prefix = format!("[{port}] ");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let found = demo
            .output()
            .iter()
            .any(|line| line.starts_with(&prefix) && line.contains(text));
        if found {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("the instance on {port} did not log {text:?}");
}

#[test]
fn a_browsers_event_stream_shows_every_instances_logins_and_logouts_in_order_across_a_redis_restart()
 {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let demo = Demo::launch(3, &["--redis-url", &redis.url()]);
    let ports = demo.ports().to_vec();
    let api = ApiClient::default();
    assert_eq!(
        EventStream::open(&demo.url(1, "/api/events"), None).err(),
        Some(401),
        "for signed-in visitors only"
    );
    let watcher = log_in(&api, &demo, 1, "bob");
    let events =
        EventStream::open(&demo.url(1, "/api/events"), Some(&watcher)).expect("an event stream");
    wait_until_live(&api, &demo, &events);

    let alice = log_in(&api, &demo, 0, "alice");
    let logout = api.call("POST", &demo, 2, "/api/logout", Some(&alice));
    assert_eq!(logout.status, 200);
    let alices = |event: &Value| event["user"] == "alice";
    let login = events
        .next_matching(Duration::from_secs(5), alices)
        .expect("alice's login");
    let logout = events
        .next_matching(Duration::from_secs(5), alices)
        .expect("alice's logout");
    assert_eq!(login["event"], "created", "{login}");
    assert_eq!(login["instance"], ports[0].to_string(), "{login}");
    assert_eq!(logout["event"], "deleted", "{logout}");
    assert_eq!(logout["instance"], ports[2].to_string(), "{logout}");
    assert_eq!(login["session"], logout["session"]);
    for text in ["event=created user=alice", "event=deleted user=alice"] {
        for &port in &ports {
            wait_for_log(&demo, port, &format!("session event {text}"));
        }
    }

    let stopped = Instant::now();
    redis.stop();
    redis.restart().expect("Redis restarts");
    let reconnected = events
        .next_matching(Duration::from_secs(15), |event| {
            event["event"] == "reconnected"
        })
        .expect("the reconnect is reported");
    println!(
        "reconnected {:?} after Redis was stopped: {reconnected}",
        stopped.elapsed()
    );
    log_in_after_restart(&api, &demo, 2, "alice");
    let login = events
        .next_matching(Duration::from_secs(5), alices)
        .expect("events go on after the restart");
    assert_eq!(login["event"], "created", "{login}");
    assert_eq!(login["instance"], ports[2].to_string(), "{login}");

    // The watcher's stream ends with the event that ends its own session.
    let logout = after_restart(|| api.call("POST", &demo, 0, "/api/logout", Some(&watcher)));
    assert_eq!(logout.status, 200, "{logout:?}");
    assert_eq!(
        events.end(Duration::from_secs(5)),
        Ok(()),
        "the stream outlived its session"
    );
}

#[test]
fn failed_logins_spread_over_three_instances_trip_the_limits_until_the_window_ends() {
    // Long enough for the steps that must fall within one window (three failures, six refused
    // logins) on a busy machine; the wait for its end is read from `Retry-After`.
    const WINDOW: u64 = 10;
    let demo = Demo::launch(
        3,
        &[
            "--max-failed-logins",
            "3",
            "--max-failed-logins-per-address",
            "6",
            "--failed-login-window",
            &WINDOW.to_string(),
        ],
    );
    // Each phase of the test comes from an address of its own, named as the balancer names
    // the client.
    let from = |address: &str| ApiClient::default().forwarding_for(address);
    let attempt = |api: &ApiClient, index: usize, user: &str, password: &str| {
        api.send(
            "POST",
            &demo.url(index, "/api/login"),
            None,
            Some(json!({"username": user, "password": password})),
        )
    };

    let guesser = from("198.51.100.1");
    for index in 0..3 {
        let answer = attempt(&guesser, index, "alice", "guess");
        assert_eq!(answer.status, 401, "failure {}: {answer:?}", index + 1);
    }
    let mut waits = Vec::new();
    for index in 0..3 {
        let answer = attempt(&guesser, index, "alice", "alice-password");
        assert_eq!(answer.status, 429, "instance {index}: {answer:?}");
        assert!(answer.cookie.is_none(), "{answer:?}");
        let wait = answer.retry_after();
        assert!((1..=WINDOW).contains(&wait), "Retry-After {wait}");
        assert_eq!(answer.json["retry_after"], wait);
        waits.push(wait);
    }
    let form = demo.url(1, "/login");
    let page = guesser.get_page(&form, &[]);
    let token = page.form_token().expect("a form token").to_owned();
    let cookie = page
        .cookie_named(demo_app::instance::LOGIN_CSRF_COOKIE)
        .expect("the form's cookie")
        .clone();
    let posted = guesser.post_form(
        &form,
        &[&cookie],
        &[
            ("username", "alice"),
            ("password", "alice-password"),
            ("csrf", &token),
        ],
    );
    assert_eq!(posted.status, 429, "{posted:?}");
    assert!(posted.text.contains("Too many failed logins"), "{posted:?}");
    assert!((1..=WINDOW).contains(&posted.retry_after()));
    assert_eq!(
        attempt(&guesser, 2, "bob", "bob-password").status,
        200,
        "another account from the same address is not throttled"
    );

    thread::sleep(
        Duration::from_secs(*waits.last().expect("three waits")) + Duration::from_millis(300),
    );
    let after = attempt(&guesser, 0, "alice", "alice-password");
    assert_eq!(after.status, 200, "the window is over: {after:?}");

    // A success clears the account's count: 2 failures, a success, 2 more, and in.
    let typo = from("198.51.100.2");
    for round in 0..2 {
        for index in [1, 2] {
            assert_eq!(attempt(&typo, index, "alice", "alice-pasword").status, 401);
        }
        let login = attempt(&typo, 0, "alice", "alice-password");
        assert_eq!(login.status, 200, "round {round}: {login:?}");
    }

    // One address guessing many accounts meets its own limit.
    let sprayer = from("198.51.100.3");
    for n in 0..6 {
        let answer = attempt(&sprayer, n % 3, &format!("user{n}"), "password1");
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    assert_eq!(attempt(&sprayer, 0, "bob", "bob-password").status, 429);
    assert_eq!(
        attempt(&from("198.51.100.4"), 0, "bob", "bob-password").status,
        200,
        "another address is not"
    );
}

/// `--max-sessions-per-user` on the launcher reaches every instance: a third login of alice's
/// ends her oldest session, on every instance, and her index lists two.
#[test]
fn a_login_beyond_the_demos_limit_ends_the_oldest_session_everywhere() {
    let redis = RedisServer::start();
    let demo = Demo::launch(
        2,
        &["--redis-url", &redis.url(), "--max-sessions-per-user", "2"],
    );
    let api = ApiClient::default();
    let oldest = log_in(&api, &demo, 0, "alice");
    let middle = log_in(&api, &demo, 1, "alice");
    let newest = log_in(&api, &demo, 0, "alice");

    assert_anonymous_everywhere(&api, &demo, &oldest, "the oldest, past the limit");
    for (index, cookie) in [(1, &middle), (0, &newest)] {
        assert_eq!(user_on(&api, &demo, index, cookie), "alice");
    }
    let listed = list(&api, &demo, 1, &newest);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(index_of(&redis, "alice").len(), 2);
}

//! Visitors who do not log in cost Redis nothing. Every page, API call, static file and 404 a
//! visitor can reach without logging in, flooded, leaves no session in Redis; the login form
//! keeps its token in a cookie of its own, not in a session. Failed logins leave only the
//! login throttle's counters, which end with their window. A login through the form still
//! works after the flood, and a forged or missing token is still refused and changes nothing.
//! Counted in commands on the server, the visits send Redis none but `/healthz`'s `PING`.

use std::thread;

use actix_web::cookie::Cookie;
use demo_app::instance::{LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use integration_tests::{
    Monitor, RedisServer,
    demo::{ApiClient, ApiResponse, Demo},
};
use serde_json::{Value, json};

/// Concurrent anonymous visitors in the flood.
const VISITORS: usize = 8;

/// How many times each visitor goes through every cheap request.
const ROUNDS: usize = 50;

/// How many times the flood tries a failed login of each kind (each costs a password hash).
const FAILED_LOGINS: usize = 5;

const NO_BODY: Option<Value> = None;

/// The prefix of the login throttle's counters.
const THROTTLE_COUNTERS: &str = "demo:t:";

#[test]
fn a_flood_of_anonymous_visits_leaves_no_session_in_redis() {
    let redis = RedisServer::start();
    // Limits the flood's failed logins stay under: what they cost is the point here, not
    // how the throttle stops them (demo_sessions).
    let demo = Demo::launch_on(
        &redis,
        1,
        &[
            "--max-failed-logins",
            "100",
            "--max-failed-logins-per-address",
            "100",
        ],
    );
    thread::scope(|scope| {
        for _ in 0..VISITORS {
            scope.spawn(|| {
                let api = ApiClient::default();
                for _ in 0..ROUNDS {
                    visit_everything_cheap(&api, &demo);
                }
            });
        }
        scope.spawn(|| {
            let api = ApiClient::default();
            for _ in 0..FAILED_LOGINS {
                fail_to_log_in(&api, &demo);
            }
        });
    });
    let (counters, others) = keys_and_throttle_counters(&redis);
    assert_eq!(
        others,
        Vec::<String>::new(),
        "anonymous visits wrote to Redis"
    );
    // alice's, mallory's and the address's, each ending with the window (300 s).
    assert_eq!(counters.len(), 3, "{counters:?}");
    for counter in &counters {
        let ttl = pttl(&redis, counter);
        assert!(0 < ttl && ttl <= 300_000, "{counter} lives {ttl} ms");
    }

    let api = ApiClient::default();
    let session = log_in_through_the_form(&api, &demo);
    let me = api.call("GET", &demo, 0, "/api/me", Some(&session));
    assert_eq!(me.json["user"], "alice", "{me:?}");
    let (counters, mut others) = keys_and_throttle_counters(&redis);
    others.sort();
    assert!(
        others.len() == 2 && others[0].starts_with("demo:s:") && others[1].starts_with("demo:u:"),
        "a login makes one session and its user's index: {others:?}"
    );
    assert_eq!(
        counters.len(),
        2,
        "the login cleared alice's count: {counters:?}"
    );
}

#[test]
fn a_forged_or_missing_form_token_is_refused_and_changes_nothing() {
    let redis = RedisServer::start();
    let demo = Demo::launch_on(&redis, 1, &[]);
    let api = ApiClient::default();
    let (token, cookie) = open_login_form(&api, &demo);
    let (other_token, other_cookie) = open_login_form(&api, &demo);
    let mut tampered = cookie.clone();
    tampered.set_value(format!("{}A", cookie.value()));
    let plain = Cookie::new(LOGIN_CSRF_COOKIE, format!("{token}.9999999999"));

    let attempts: [(&str, Vec<&Cookie<'_>>, Option<&str>); 6] = [
        ("a token and no cookie", vec![], Some(&token)),
        ("a cookie and no token", vec![&cookie], None),
        (
            "a cookie and a made-up token",
            vec![&cookie],
            Some("made-up"),
        ),
        (
            "one visitor's cookie with another's token",
            vec![&cookie],
            Some(&other_token),
        ),
        ("a tampered cookie", vec![&tampered], Some(&token)),
        ("a cookie this app did not seal", vec![&plain], Some(&token)),
    ];
    for (what, cookies, submitted) in attempts {
        let mut fields = vec![("username", "alice"), ("password", "alice-password")];
        fields.extend(submitted.map(|token| ("csrf", token)));
        let answer = api.post_form(&demo.url(0, "/login"), &cookies, &fields);
        assert_eq!(answer.status, 403, "{what}: {answer:?}");
        assert!(answer.cookie.is_none(), "{what} got a session: {answer:?}");
        assert_eq!(keys(&redis), 0, "{what} wrote to Redis");
    }

    // The visitor's token is no good for a signed-in user's forms, which keep the session's.
    let session = log_in_through_the_form(&api, &demo);
    let profile = api.post_form(
        &demo.url(0, "/profile"),
        &[&session, &other_cookie],
        &[("display_name", "Mallory"), ("csrf", &other_token)],
    );
    assert_eq!(profile.status, 403, "{profile:?}");
    let me = api.call("GET", &demo, 0, "/api/me", Some(&session));
    assert_eq!(me.json["display_name"], Value::Null, "{me:?}");
}

/// One round of everything a visitor can reach without logging in and without a password
/// hash, each with the answer it should get, none with a session cookie.
fn visit_everything_cheap(api: &ApiClient, demo: &Demo) {
    let login_form = api.get_page(&demo.url(0, "/login"), &[]);
    assert_eq!(login_form.status, 200);
    let (token, cookie) = token_and_cookie(&login_form);
    let url = |path| demo.url(0, path);
    // Pages and files, each as a browser would load it.
    let pages = [
        ("/", 200),
        ("/profile", 303),
        ("/api/me", 200),
        ("/healthz", 200),
        ("/static/style.css", 200),
        ("/static/history.js", 200),
        ("/stats", 200),
        ("/api/stats", 200),
        ("/metrics", 200),
        ("/static/stats.js", 200),
        ("/static/stats.css", 200),
        ("/no-such-page", 404),
    ];
    let mut answers: Vec<(String, ApiResponse, u16)> = pages
        .iter()
        .map(|&(path, status)| (format!("GET {path}"), api.get_page(&url(path), &[]), status))
        .collect();
    let others = [
        (
            "GET /login again",
            api.get_page(&url("/login"), &[&cookie]),
            200,
        ),
        (
            "POST /login with a forged token",
            api.post_form(
                &url("/login"),
                &[&cookie],
                &[("username", "a"), ("password", "b"), ("csrf", "forged")],
            ),
            403,
        ),
        (
            "POST /logout",
            api.post_form(&url("/logout"), &[&cookie], &[("csrf", &token)]),
            403,
        ),
        (
            "POST /profile",
            api.post_form(
                &url("/profile"),
                &[&cookie],
                &[("display_name", "x"), ("csrf", &token)],
            ),
            403,
        ),
        (
            "POST /api/logout",
            api.send("POST", &url("/api/logout"), None, NO_BODY),
            200,
        ),
        (
            "PUT /api/profile",
            api.send(
                "PUT",
                &url("/api/profile"),
                None,
                Some(json!({"display_name": "x"})),
            ),
            401,
        ),
    ];
    answers.extend(others.map(|(what, answer, status)| (what.to_owned(), answer, status)));
    for (what, answer, status) in answers {
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        assert!(
            answer.cookie.is_none() || answer.cookie.as_ref().is_some_and(|c| c.value().is_empty()),
            "{what} set a session cookie: {answer:?}"
        );
    }
}

/// Failed logins of every kind: through the form and the API, wrong password and unknown user.
fn fail_to_log_in(api: &ApiClient, demo: &Demo) {
    let (token, cookie) = open_login_form(api, demo);
    for (username, password) in [("alice", "wrong"), ("mallory", "alice-password")] {
        let form = api.post_form(
            &demo.url(0, "/login"),
            &[&cookie],
            &[
                ("username", username),
                ("password", password),
                ("csrf", &token),
            ],
        );
        assert_eq!(form.status, 401, "{form:?}");
        assert!(
            form.cookie.is_none(),
            "a failed login got a session: {form:?}"
        );
        assert_eq!(
            form.form_token(),
            Some(token.as_str()),
            "the form is shown again, same token"
        );
        let credentials = json!({"username": username, "password": password});
        let json = api.send("POST", &demo.url(0, "/api/login"), None, Some(credentials));
        assert_eq!(json.status, 401, "{json:?}");
        assert!(
            json.cookie.is_none(),
            "a failed login got a session: {json:?}"
        );
    }
}

/// Opens the login form as a new visitor: its token, and the cookie that goes with it.
fn open_login_form(api: &ApiClient, demo: &Demo) -> (String, Cookie<'static>) {
    let page = api.get_page(&demo.url(0, "/login"), &[]);
    assert_eq!(page.status, 200, "{page:?}");
    token_and_cookie(&page)
}

fn token_and_cookie(page: &ApiResponse) -> (String, Cookie<'static>) {
    assert!(
        page.cookie.is_none(),
        "the login form made a session: {page:?}"
    );
    let token = page.form_token().expect("a token in the form").to_owned();
    let cookie = page
        .cookie_named(LOGIN_CSRF_COOKIE)
        .expect("the form's cookie")
        .clone();
    (token, cookie)
}

/// Logs alice in through the form, as a browser would; returns her session cookie.
fn log_in_through_the_form(api: &ApiClient, demo: &Demo) -> Cookie<'static> {
    let (token, cookie) = open_login_form(api, demo);
    let login = api.post_form(
        &demo.url(0, "/login"),
        &[&cookie],
        &[
            ("username", "alice"),
            ("password", "alice-password"),
            ("csrf", &token),
        ],
    );
    assert_eq!(login.status, 303, "{login:?}");
    let removed = login
        .cookie_named(LOGIN_CSRF_COOKIE)
        .expect("the form's cookie is dropped");
    assert_eq!(removed.value(), "", "{removed}");
    let session = login.cookie.expect("a session cookie");
    assert_eq!(session.name(), SESSION_COOKIE);
    session
}

/// The keys of the test's own Redis: the login throttle's counters, and the others.
fn keys_and_throttle_counters(redis: &RedisServer) -> (Vec<String>, Vec<String>) {
    let mut connection = redis
        .client()
        .get_connection()
        .expect("the test's Redis answers");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut connection)
        .expect("KEYS");
    keys.into_iter()
        .partition(|key| key.starts_with(THROTTLE_COUNTERS))
}

/// How long `key` has left, in milliseconds.
fn pttl(redis: &RedisServer, key: &str) -> i64 {
    let mut connection = redis
        .client()
        .get_connection()
        .expect("the test's Redis answers");
    redis::cmd("PTTL")
        .arg(key)
        .query(&mut connection)
        .expect("PTTL")
}

/// How many keys the test's own Redis holds.
fn keys(redis: &RedisServer) -> u64 {
    let mut connection = redis
        .client()
        .get_connection()
        .expect("the test's Redis answers");
    redis::cmd("DBSIZE").query(&mut connection).expect("DBSIZE")
}

/// Counted on the server (`MONITOR`), not inferred from the keys left over, which a read, or
/// a write and then a delete, would pass: every cheap request a visitor can make sends Redis
/// nothing, but for `/healthz`, whose one `PING` is its point.
#[test]
fn anonymous_visits_send_redis_no_command_but_the_health_checks_ping() {
    const VISITS: usize = 3;
    let redis = RedisServer::start();
    let demo = Demo::launch_on(&redis, 1, &[]);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let monitor = runtime.block_on(Monitor::start(&redis.client()));
    let api = ApiClient::default();
    for _ in 0..VISITS {
        visit_everything_cheap(&api, &demo);
    }
    let commands = runtime.block_on(monitor.take());
    let names: Vec<&str> = commands
        .iter()
        .map(|command| command.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["ping"; VISITS],
        "the commands of {VISITS} rounds of anonymous visits: {:#?}",
        commands
            .iter()
            .map(|command| &command.line)
            .collect::<Vec<_>>()
    );
}

//! The demo's trust boundary, probed as a client on the same machine would: client addresses
//! it names itself, changes posted from another origin, oversized bodies, and what the pages
//! tell the browser.

use std::time::{Duration, Instant};

use integration_tests::{
    RedisServer,
    demo::{ApiClient, ApiResponse, Demo},
    sse::EventStream,
};
use serde_json::json;

fn log_in(api: &ApiClient, url: &str, user: &str, password: &str) -> ApiResponse {
    api.send(
        "POST",
        url,
        None,
        Some(json!({"username": user, "password": password})),
    )
}

/// Logs alice in on instance 0 of `demo`; the session cookie.
fn alice_on(demo: &Demo) -> actix_web::cookie::Cookie<'static> {
    let login = log_in(
        &ApiClient::default(),
        &demo.url(0, "/api/login"),
        "alice",
        "alice-password",
    );
    login.cookie.expect("a session cookie")
}

/// Every page links to the instances' own ports, where every local client is a loopback peer:
/// an `X-Forwarded-For` sent there, with a guess at the balancer's proof or without, names
/// nobody, and the failures count under the real peer.
#[test]
fn a_forged_forwarded_address_to_an_instances_port_counts_under_the_real_peer() {
    let demo = Demo::launch_with_balancer(
        1,
        &[
            "--max-failed-logins-per-address",
            "3",
            "--max-failed-logins",
            "100",
        ],
    );
    let url = demo.url(0, "/api/login");
    let forged = |n: usize| {
        ApiClient::default()
            .with_header("x-forwarded-for", &format!("203.0.113.{n}"))
            .with_header("x-demo-balancer", "a-guess")
    };
    for n in 1..=3 {
        let answer = log_in(&forged(n), &url, &format!("user{n}"), "guess");
        assert_eq!(answer.status, 401, "failure {n}: {answer:?}");
    }
    let answer = log_in(&forged(4), &url, "bob", "bob-password");
    assert_eq!(
        answer.status, 429,
        "the 4th attempt from 127.0.0.1, whatever the header said: {answer:?}"
    );
}

/// A change sent with the browser's word that it comes from another origin (another port on
/// localhost is the same site, so `SameSite=Lax` cookies go with it) is refused before it
/// reaches the session; from the page's own origin, or from a client that is no browser, it
/// goes on.
#[test]
fn changes_from_another_origin_are_refused_and_change_nothing() {
    let demo = Demo::launch(1, &[]);
    let api = ApiClient::default();
    let cookie = alice_on(&demo);
    let own_origin = format!("http://127.0.0.1:{}", demo.ports()[0]);
    let foreign = [
        ("origin", "http://127.0.0.1:9999"),
        ("origin", "null"),
        ("sec-fetch-site", "same-site"),
        ("sec-fetch-site", "cross-site"),
    ];
    for (name, value) in foreign {
        let from = ApiClient::default().with_header(name, value);
        for (method, path) in [
            ("POST", "/api/logout-everywhere"),
            ("POST", "/api/sessions/revoke-others"),
            ("POST", "/api/logout"),
            ("PUT", "/api/profile"),
        ] {
            let body = (method == "PUT").then(|| json!({"display_name": "Mallory"}));
            let answer = from.send(method, &demo.url(0, path), Some(&cookie), body);
            assert_eq!(
                answer.status, 403,
                "{name}: {value} {method} {path}: {answer:?}"
            );
        }
        let form = from.post_form(&demo.url(0, "/logout"), &[&cookie], &[("csrf", "x")]);
        assert_eq!(form.status, 403, "{name}: {value} form: {form:?}");
        // An event stream holds one of the session's few: not for another origin's page.
        let stream = from.call("GET", &demo, 0, "/api/events", Some(&cookie));
        assert_eq!(stream.status, 403, "{name}: {value} stream: {stream:?}");
    }
    let me = api.call("GET", &demo, 0, "/api/me", Some(&cookie));
    assert_eq!(me.json["user"], "alice", "still signed in: {me:?}");
    assert_eq!(me.json["display_name"], serde_json::Value::Null, "{me:?}");

    let same = ApiClient::default().with_header("origin", &own_origin);
    let renamed = same.set_display_name(&demo, 0, &cookie, "Alice");
    assert_eq!(renamed.status, 200, "{renamed:?}");
    let same_origin = ApiClient::default().with_header("sec-fetch-site", "same-origin");
    let out = same_origin.call("POST", &demo, 0, "/api/logout", Some(&cookie));
    assert_eq!(out.status, 200, "{out:?}");
    let me = api.call("GET", &demo, 0, "/api/me", Some(&cookie));
    assert_eq!(me.json["user"], serde_json::Value::Null, "{me:?}");
}

/// A 1 MiB login is refused with `413` at once, twenty times over, and the instance's memory
/// does not grow by what it was sent; a password longer than any account's is refused before
/// it is checked.
#[test]
fn oversized_logins_are_refused_at_once_in_bounded_memory() {
    let demo = Demo::launch(1, &[]);
    let api = ApiClient::default();
    let url = demo.url(0, "/api/login");
    let rss = || resident_kib(demo.pid(0));
    let before = rss();
    let huge = "x".repeat(1024 * 1024);
    for _ in 0..20 {
        let started = Instant::now();
        let answer = log_in(&api, &url, "alice", &huge);
        assert_eq!(answer.status, 413, "{answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    let grown = rss().saturating_sub(before);
    assert!(grown < 8 * 1024, "grew by {grown} KiB for 20 MiB sent");

    let long = log_in(&api, &url, "alice", &"x".repeat(2000));
    assert_eq!(long.status, 400, "{long:?}");
    let long = log_in(&api, &url, &"a".repeat(65), "alice-password");
    assert_eq!(long.status, 400, "{long:?}");
    assert_eq!(log_in(&api, &url, "alice", "alice-password").status, 200);
}

/// Every page says where its scripts may come from (this origin only, nothing inline) and that
/// no one may frame it; the stats are readable by the demo's own pages on other ports and by
/// no other origin.
#[test]
fn pages_carry_their_security_headers_and_stats_answer_only_the_demos_origins() {
    let demo = Demo::launch(2, &[]);
    let api = ApiClient::default();
    let cookie = alice_on(&demo);
    let pages = [
        ("/", true),
        ("/login", false),
        ("/profile", true),
        ("/sessions", true),
    ];
    for (path, signed_in) in pages.into_iter().chain([("/stats", false)]) {
        let cookies = if signed_in { vec![&cookie] } else { Vec::new() };
        let page = api.get_page(&demo.url(0, path), &cookies);
        assert_eq!(page.status, 200, "{path}: {page:?}");
        let policy = &page.headers["content-security-policy"];
        assert!(policy.contains("script-src 'self'"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert_eq!(page.headers["x-content-type-options"], "nosniff", "{path}");
        assert!(!page.text.contains("<script>"), "{path}: an inline script");
    }

    let stats = |origin: &str| {
        ApiClient::default().with_header("origin", origin).send(
            "GET",
            &demo.url(0, "/api/stats"),
            None,
            None::<()>,
        )
    };
    let peer = format!("http://127.0.0.1:{}", demo.ports()[1]);
    let answer = stats(&peer);
    assert_eq!(
        answer.headers.get("access-control-allow-origin"),
        Some(&peer),
        "{answer:?}"
    );
    for origin in ["http://127.0.0.1:9999", "http://evil.example:8080", "null"] {
        let answer = stats(origin);
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.headers.get("access-control-allow-origin"),
            None,
            "{origin}: {answer:?}"
        );
    }
}

/// A session holds at most `--max-streams-per-session` event streams (`429` past it), and every
/// one of them ends within a keep-alive period (15 s) of its session's end, here its key
/// deleted straight in Redis, which no event announces.
#[test]
fn event_streams_are_limited_per_session_and_end_with_their_session() {
    let redis = RedisServer::start();
    let demo = Demo::launch_on(&redis, 1, &["--max-streams-per-session", "2"]);
    let url = demo.url(0, "/api/events");
    let cookie = alice_on(&demo);
    let streams: Vec<EventStream> = (0..2)
        .map(|_| EventStream::open(&url, Some(&cookie)).expect("a stream"))
        .collect();
    assert_eq!(EventStream::open(&url, Some(&cookie)).err(), Some(429));

    let mut connection = redis.client().get_connection().expect("Redis answers");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("demo:*")
        .query(&mut connection)
        .expect("KEYS");
    let sessions: Vec<&String> = keys
        .iter()
        .filter(|key| {
            redis::cmd("TYPE")
                .arg(key)
                .query::<String>(&mut connection)
                .is_ok_and(|kind| kind == "hash")
        })
        .collect();
    assert_eq!(sessions.len(), 1, "alice's session alone: {keys:?}");
    let _: () = redis::cmd("DEL")
        .arg(sessions[0])
        .query(&mut connection)
        .expect("DEL");
    let deleted = Instant::now();
    for stream in &streams {
        let left = Duration::from_secs(20).saturating_sub(deleted.elapsed());
        stream
            .end(left)
            .expect("the stream ends within 20 s of its session");
    }
    let ended = deleted.elapsed();
    println!("both streams ended {ended:?} after the session's key was deleted");
    assert!(ended <= Duration::from_secs(16), "{ended:?}");
}

/// A stream does not keep its session alive, and ends within a keep-alive period (15 s) of the
/// session's idle expiry, which the demo's Redis announces to no one here (its keyspace
/// notifications are off).
#[test]
fn an_event_stream_ends_with_its_sessions_idle_expiry() {
    const IDLE: Duration = Duration::from_secs(3);
    let redis = RedisServer::start();
    let idle = IDLE.as_secs().to_string();
    let demo = Demo::launch_on(&redis, 1, &["--idle-timeout", &idle]);
    let cookie = alice_on(&demo);
    let stream = EventStream::open(&demo.url(0, "/api/events"), Some(&cookie)).expect("a stream");
    let opened = Instant::now();
    stream
        .end(Duration::from_secs(30))
        .expect("the stream ends within 27 s of its session's idle expiry");
    let ended = opened.elapsed();
    println!("the stream ended {ended:?} after it opened, its session idle after {IDLE:?}");
    assert!(ended >= IDLE, "ended before its session: {ended:?}");
    assert!(ended <= IDLE + Duration::from_secs(16), "{ended:?}");
    let me = ApiClient::default().send("GET", &demo.url(0, "/api/me"), Some(&cookie), None::<()>);
    assert_eq!(me.json["user"], serde_json::Value::Null, "{me:?}");
}

/// The resident memory of process `pid`, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

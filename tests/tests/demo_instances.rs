//! The real demo binary: three instances on three ports share one login.

use integration_tests::{
    RedisServer,
    demo::{ApiClient, ApiResponse, Demo},
};
use serde_json::{Value, json};

/// `POST /api/login` as alice on instance `index`.
fn alice_logs_in(api: &ApiClient, demo: &Demo, index: usize) -> ApiResponse {
    api.log_in(demo, index, "alice", "alice-password")
}

#[test]
fn three_instances_share_login_profile_and_logout() {
    // No --redis-url: the launcher starts its own Redis, as it does for a person.
    let demo = Demo::launch(3, &[]);
    let api = ApiClient::default();
    let me = |index: usize, cookie| api.call("GET", &demo, index, "/api/me", cookie);

    let login = alice_logs_in(&api, &demo, 0);
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.json["user"], "alice");
    assert_eq!(login.json["instance"], demo.ports()[0]);
    assert_eq!(
        login.headers.get("cache-control").map(String::as_str),
        Some("no-store"),
        "a response that sets the session cookie must not be cached"
    );
    let cookie = login.cookie.expect("a session cookie");
    assert!(
        cookie.http_only().unwrap_or(false),
        "cookie not HttpOnly: {cookie}"
    );
    assert_eq!(cookie.same_site(), Some(actix_web::cookie::SameSite::Lax));
    assert_ne!(
        cookie.secure(),
        Some(true),
        "the launcher runs on plain-HTTP localhost"
    );

    for index in [1, 2] {
        let answer = me(index, Some(&cookie));
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.headers.get("cache-control"),
            None,
            "no cookie set, no header"
        );
        assert_eq!(answer.json["user"], "alice", "instance {index}: {answer:?}");
        assert_eq!(answer.json["instance"], demo.ports()[index]);
    }

    let profile = api.set_display_name(&demo, 1, &cookie, "Alice Liddell");
    assert_eq!(profile.status, 200, "{profile:?}");
    assert_eq!(me(2, Some(&cookie)).json["display_name"], "Alice Liddell");

    let logout = api.call("POST", &demo, 2, "/api/logout", Some(&cookie));
    assert_eq!(logout.status, 200);
    assert_eq!(
        logout.headers.get("clear-site-data").map(String::as_str),
        Some("\"cookies\"")
    );
    assert_eq!(
        logout.headers.get("cache-control").map(String::as_str),
        Some("no-store")
    );
    for index in 0..3 {
        let answer = me(index, Some(&cookie));
        assert_eq!(
            answer.json["user"],
            Value::Null,
            "instance {index} still knows the old cookie"
        );
    }

    let wrong = api.log_in(&demo, 1, "alice", "not-her-password");
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.cookie.is_none(),
        "a failed login got a session: {wrong:?}"
    );
    let unknown = api.log_in(&demo, 1, "mallory", "alice-password");
    assert_eq!(unknown.status, 401);

    let (status, output) = demo.stop();
    assert!(
        status.success(),
        "launcher exit {status}:\n{}",
        output.join("\n")
    );
    assert!(
        output
            .iter()
            .any(|line| line.starts_with("Started a private Redis"))
    );
}

#[test]
fn login_renews_the_session_id() {
    let demo = Demo::launch(1, &[]);
    let api = ApiClient::default();
    let credentials = json!({"username": "bob", "password": "bob-password"});
    let first = api.send("POST", &demo.url(0, "/api/login"), None, Some(&credentials));
    let first = first.cookie.expect("a session cookie");
    let second = api.send(
        "POST",
        &demo.url(0, "/api/login"),
        Some(&first),
        Some(&credentials),
    );
    let second = second.cookie.expect("a renewed cookie");
    assert_ne!(first.value(), second.value());
    let old = api.call("GET", &demo, 0, "/api/me", Some(&first));
    assert_eq!(
        old.json["user"],
        Value::Null,
        "the pre-login id still works"
    );

    // Whoever logs in over someone else's session inherits nothing of it.
    let profile = api.set_display_name(&demo, 0, &second, "Bob B.");
    assert_eq!(profile.status, 200);
    let alice = json!({"username": "alice", "password": "alice-password"});
    let takeover = api.send(
        "POST",
        &demo.url(0, "/api/login"),
        Some(&second),
        Some(&alice),
    );
    assert_eq!(takeover.json["user"], "alice");
    assert_eq!(
        takeover.json["display_name"],
        Value::Null,
        "bob's state leaked to alice"
    );
}

#[test]
fn anonymous_pages_create_no_session() {
    let demo = Demo::launch(1, &[]);
    let api = ApiClient::default();
    for path in ["/", "/api/me"] {
        let response = api.call("GET", &demo, 0, path, None);
        assert!(
            response.cookie.is_none(),
            "GET {path} set a cookie: {response:?}"
        );
    }
    let login_page = api.call("GET", &demo, 0, "/login", None);
    assert!(
        login_page.cookie.is_none(),
        "the login form made a session: {login_page:?}"
    );
    assert!(
        login_page
            .cookie_named(demo_app::instance::LOGIN_CSRF_COOKIE)
            .is_some(),
        "the login form's token travels in a cookie of its own: {login_page:?}"
    );
}

#[test]
fn health_is_503_while_redis_is_down_and_200_again_after() {
    let mut redis = RedisServer::start();
    let demo = Demo::launch(1, &["--redis-url", &redis.url()]);
    let api = ApiClient::default();
    let health = || api.call("GET", &demo, 0, "/healthz", None);
    assert_eq!(health().json["redis"], "ok");
    redis.stop();
    let started = std::time::Instant::now();
    let down = health();
    assert_eq!(down.status, 503, "{down:?}");
    assert_eq!(down.json["redis"], "unavailable");
    assert_eq!(
        down.headers.get("retry-after").map(String::as_str),
        Some("1")
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the health check hung"
    );
    redis.restart().expect("Redis restarts");
    assert_eq!(health().status, 200, "no recovery");
}

/// With `RUST_BACKTRACE=1` (as in many containers) and Redis stopped, 1,000 requests (and more,
/// for a little over two seconds) that need their session are all `503`s, and the instance
/// says so in a few lines: at most one a second per cause, the later ones with the count of
/// those folded into them, none with a backtrace.
#[test]
fn an_outage_is_a_few_log_lines_without_backtraces() {
    let mut redis = RedisServer::start();
    let demo = Demo::launch_with_env(
        1,
        &["--redis-url", &redis.url()],
        &[("RUST_BACKTRACE", "1")],
    );
    let api = ApiClient::default();
    let cookie = alice_logs_in(&api, &demo, 0)
        .cookie
        .expect("a session cookie");
    let before = demo.output().len();
    redis.stop();
    let started = std::time::Instant::now();
    let mut requests = 0;
    while requests < 1_000 || started.elapsed() < std::time::Duration::from_millis(2_200) {
        let (method, path) = if requests % 2 == 0 {
            ("GET", "/api/me")
        } else {
            ("POST", "/api/logout")
        };
        let answer = api.call(method, &demo, 0, path, Some(&cookie));
        assert_eq!(answer.status, 503, "{method} {path}: {answer:?}");
        assert_eq!(
            answer.headers.get("retry-after").map(String::as_str),
            Some("1")
        );
        requests += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    // The last lines reach the collector.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lines = demo.output().split_off(before);
    let failures: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("Redis unavailable"))
        .collect();
    let causes: std::collections::HashSet<&str> = failures
        .iter()
        .filter_map(|line| line.split("error=").nth(1)?.split(" folded=").next())
        .collect();
    println!(
        "{requests} requests in {seconds:.1} s with Redis stopped: {} failure lines of {} \
         causes, {} lines in all:\n{}",
        failures.len(),
        causes.len(),
        lines.len(),
        lines.join("\n")
    );
    assert!(
        (1..=3).contains(&causes.len()),
        "a refused connection is not a new cause each time: {causes:?}"
    );
    // Per cause, the first line and one a second after it.
    let bound = causes.len() * (seconds.ceil() as usize + 1);
    assert!(failures.len() <= bound, "{} failure lines", failures.len());
    assert!(lines.len() <= failures.len() + 10, "{} lines", lines.len());
    let folded: u64 = failures
        .iter()
        .filter_map(|line| line.split(" folded=").nth(1)?.trim().parse::<u64>().ok())
        .sum();
    assert!(
        folded > 0 && folded < requests,
        "the lines count the {requests} failures they fold: {folded}"
    );
    for line in &lines {
        assert!(
            !line.contains("backtrace")
                && !line.contains("rust_begin_unwind")
                && !line.contains(" at /"),
            "a backtrace in the log: {line}"
        );
    }
}

#[test]
fn signed_in_forms_with_a_wrong_or_missing_token_are_refused_and_change_nothing() {
    let demo = Demo::launch(1, &[]);
    let api = ApiClient::default();
    let cookie = alice_logs_in(&api, &demo, 0)
        .cookie
        .expect("a session cookie");
    let profile = api.get_page(&demo.url(0, "/profile"), &[&cookie]);
    let token = profile
        .form_token()
        .expect("the profile form's token")
        .to_owned();
    let wrong = format!("{}x", &token[1..]);
    for csrf in [None, Some(wrong.as_str()), Some("")] {
        let mut fields = vec![("display_name", "Mallory")];
        fields.extend(csrf.map(|csrf| ("csrf", csrf)));
        let save = api.post_form(&demo.url(0, "/profile"), &[&cookie], &fields);
        assert_eq!(save.status, 403, "{csrf:?}");
        let logout = api.post_form(&demo.url(0, "/logout"), &[&cookie], &fields[1..]);
        assert_eq!(logout.status, 403, "{csrf:?}");
    }
    let me = api.call("GET", &demo, 0, "/api/me", Some(&cookie));
    assert_eq!(me.json["user"], "alice", "still signed in");
    assert!(
        me.json["display_name"].is_null(),
        "nothing changed: {:?}",
        me.json
    );
    let saved = api.post_form(
        &demo.url(0, "/profile"),
        &[&cookie],
        &[("display_name", "Alice"), ("csrf", &token)],
    );
    assert_eq!(saved.status, 303, "the right token works");
}

#[test]
fn instances_with_other_cookie_keys_do_not_accept_each_others_cookies() {
    let redis = RedisServer::start();
    let ours = Demo::launch(1, &["--redis-url", &redis.url()]);
    let theirs = Demo::launch(1, &["--redis-url", &redis.url()]);
    let api = ApiClient::default();
    let cookie = alice_logs_in(&api, &ours, 0)
        .cookie
        .expect("a session cookie");
    let there = api.call("GET", &theirs, 0, "/api/me", Some(&cookie));
    assert_eq!(there.status, 200, "no 5xx");
    assert!(there.json["user"].is_null(), "{:?}", there.json);
    let here = api.call("GET", &ours, 0, "/api/me", Some(&cookie));
    assert_eq!(here.json["user"], "alice");
}

#[test]
fn a_huge_cookie_header_is_refused_by_the_server_not_failed() {
    use std::io::{Read as _, Write as _};

    let demo = Demo::launch(1, &[]);
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", demo.ports()[0])).expect("the demo listens");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("a timeout");
    let cookie = format!("session={}", "A".repeat(128 * 1024));
    // The server may answer and close before it read the whole header: ignore write errors.
    let _ = write!(
        stream,
        "GET /api/me HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.split_whitespace().nth(1).unwrap_or("no answer");
    assert_eq!(
        status, "431",
        "a 128 KiB cookie header got {status:?}: {answer:.200}"
    );
    let api = ApiClient::default();
    let me = api.call("GET", &demo, 0, "/api/me", None);
    assert_eq!(me.status, 200, "the instance no longer serves");
}

#[test]
fn secure_cookies_carry_the_host_prefix() {
    let demo = Demo::launch(1, &["--secure-cookies"]);
    let api = ApiClient::default();
    let login = alice_logs_in(&api, &demo, 0);
    let cookie = login.cookie.expect("a session cookie");
    assert_eq!(cookie.name(), "__Host-session");
    assert_eq!(cookie.secure(), Some(true), "{cookie}");
    assert_eq!(cookie.path(), Some("/"), "{cookie}");
    assert_eq!(cookie.domain(), None, "{cookie}");
    let me = api.call("GET", &demo, 0, "/api/me", Some(&cookie));
    assert_eq!(me.json["user"], "alice");
}

#[test]
fn anonymous_when_redis_is_down_then_logged_in_again() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let demo = Demo::launch(
        2,
        &["--redis-url", &redis.url(), "--anonymous-when-redis-down"],
    );
    let api = ApiClient::default();
    let login = alice_logs_in(&api, &demo, 0);
    let cookie = login.cookie.expect("a session cookie");

    redis.stop();
    let me = api.call("GET", &demo, 1, "/api/me", Some(&cookie));
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(
        me.json["user"],
        Value::Null,
        "anonymous while Redis is down"
    );
    assert!(me.cookie.is_none(), "the cookie is left alone: {me:?}");
    let write = api.set_display_name(&demo, 1, &cookie, "Alice");
    assert_eq!(write.status, 503, "only reads go on anonymous: {write:?}");
    let logout = api.call("POST", &demo, 0, "/api/logout", Some(&cookie));
    assert_eq!(
        logout.status, 503,
        "a logout that cannot happen says so: {logout:?}"
    );

    redis.restart().expect("Redis restarts");
    let me = api.call("GET", &demo, 1, "/api/me", Some(&cookie));
    assert_eq!(me.json["user"], "alice", "logged in again: {me:?}");
}

#[test]
fn a_saturated_login_form_says_to_try_again_in_a_moment() {
    // One hashing thread and no queue: of logins sent at once, all but one are turned away.
    let demo = Demo::launch(1, &["--hash-threads", "1", "--login-queue", "0"]);
    let api = ApiClient::default();
    let form = api.get_page(&demo.url(0, "/login"), &[]);
    let token = form.form_token().expect("a token").to_owned();
    let cookie = form
        .cookie_named(demo_app::instance::LOGIN_CSRF_COOKIE)
        .expect("the form's cookie")
        .clone();
    let fields = [
        ("username", "alice"),
        ("password", "alice-password"),
        ("csrf", token.as_str()),
    ];
    let start = std::sync::Barrier::new(8);
    let answers: Vec<_> = std::thread::scope(|scope| {
        let posts: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let api = ApiClient::default();
                    start.wait();
                    api.post_form(&demo.url(0, "/login"), &[&cookie], &fields)
                })
            })
            .collect();
        posts
            .into_iter()
            .map(|post| post.join().expect("a client"))
            .collect()
    });
    assert!(
        answers
            .iter()
            .all(|answer| [303, 503].contains(&answer.status)),
        "{answers:?}"
    );
    let busy = answers
        .iter()
        .find(|answer| answer.status == 503)
        .expect("eight logins at once on one thread without a queue: some are turned away");
    assert_eq!(
        busy.headers.get("retry-after").map(String::as_str),
        Some("1")
    );
    assert!(busy.text.contains("try again in a moment"), "{busy:?}");
    assert_eq!(
        busy.form_token(),
        Some(token.as_str()),
        "the form is there for the retry"
    );
    assert!(busy.cookie.is_none(), "a turned-away login got a session");
}

#[test]
fn a_redis_that_is_not_there_is_said_once_and_waited_for_quietly() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();
    let mut demo = Demo::spawn(2, &["--redis-url", &url], false);
    let said = demo
        .wait_for_line("does not answer", std::time::Duration::from_secs(2))
        .unwrap_or_else(|| panic!("nothing said within 2 s:\n{}", demo.output().join("\n")));
    assert_eq!(
        said,
        format!(
            "Redis at {url} does not answer: connection refused. Start it, or drop \
             --redis-url to use a private one."
        )
    );

    std::thread::sleep(std::time::Duration::from_secs(2));
    let output = demo.output();
    let said = output
        .iter()
        .filter(|line| line.contains("does not answer"))
        .count();
    assert_eq!(said, 1, "said more than once:\n{}", output.join("\n"));
    assert!(
        !output.iter().any(|line| line.contains("WARN")),
        "warnings while waiting:\n{}",
        output.join("\n")
    );
    assert!(demo.line_starting("The demo is up").is_none());

    redis.restart().expect("Redis starts on its port");
    demo.wait_until_up().expect("the demo comes up");
    let output = demo.output();
    assert!(
        !output.iter().any(|line| line.contains("WARN")),
        "warnings:\n{}",
        output.join("\n")
    );
    let api = ApiClient::default();
    let login = alice_logs_in(&api, &demo, 1);
    assert_eq!(login.status, 200, "{login:?}");
}

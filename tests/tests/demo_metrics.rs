//! The demo's `/metrics`, read as Prometheus reads it: strictly valid text, histograms as
//! histograms, and counters that grow by exactly the requests sent to the instance.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use actix_web::cookie::Cookie;
use integration_tests::{
    RedisServer,
    demo::{ApiClient, Demo},
    prometheus::{Exposition, Kind},
};

/// Requests sent between two scrapes.
const N: u32 = 7;

/// `GET /metrics` of instance 0, checked strictly.
fn scrape(api: &ApiClient, demo: &Demo) -> Exposition {
    let response = api.call("GET", demo, 0, "/metrics", None);
    assert_eq!(response.status, 200, "{response:?}");
    let content_type = response.headers.get("content-type").cloned();
    assert!(
        content_type
            .as_deref()
            .is_some_and(|value| value.starts_with("text/plain; version=0.0.4")),
        "{content_type:?}"
    );
    Exposition::parse(&response.text)
        .unwrap_or_else(|err| panic!("/metrics is no Prometheus text: {err}\n{}", response.text))
}

fn alice_logs_in(api: &ApiClient, demo: &Demo) -> Cookie<'static> {
    let login = api.log_in(demo, 0, "alice", "alice-password");
    assert_eq!(login.status, 200, "{login:?}");
    login.cookie.expect("a session cookie")
}

/// Sends `request_line` (which HTTP clients refuse when its method is not a standard one) and
/// returns the status line of the answer.
fn raw_request(port: u16, request_line: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the instance listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    write!(
        stream,
        "{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("the request is sent");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

/// How much `name{labels}` grew from `before` to `after`.
fn growth(before: &Exposition, after: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.sum(name, labels) - before.sum(name, labels)
}

#[test]
fn metrics_are_prometheus_text_and_count_exactly_the_requests_sent() {
    // Kept on disk, so that alice's session outlives the restart at the end.
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let demo = Demo::launch(1, &["--redis-url", &redis.url()]);
    let api = ApiClient::default();
    let cookie = alice_logs_in(&api, &demo);

    let before = scrape(&api, &demo);
    for _ in 0..N {
        let me = api.call("GET", &demo, 0, "/api/me", Some(&cookie));
        assert_eq!(me.json["user"], "alice", "{me:?}");
    }
    let after = scrape(&api, &demo);

    let n = f64::from(N);
    let load_ok = [("operation", "load"), ("outcome", "ok")];
    let me_ok = [("method", "GET"), ("route", "/api/me"), ("status", "200")];
    let me_timed = [("method", "GET"), ("route", "/api/me")];
    let loads_timed = [("operation", "load")];
    assert_eq!(
        growth(&before, &after, "session_store_operations_total", &load_ok),
        n
    );
    assert_eq!(growth(&before, &after, "http_requests_total", &me_ok), n);
    assert_eq!(
        growth(
            &before,
            &after,
            "http_request_duration_seconds_count",
            &me_timed
        ),
        n
    );
    assert_eq!(
        growth(
            &before,
            &after,
            "session_store_operation_duration_seconds_count",
            &loads_timed
        ),
        n
    );
    // The first scrape is counted in the second one, under its route.
    assert_eq!(
        after.sum("http_requests_total", &[("route", "/metrics")]),
        1.0
    );
    for histogram in [
        "session_store_operation_duration_seconds",
        "session_store_state_bytes",
        "http_request_duration_seconds",
    ] {
        assert_eq!(after.kind(histogram), Some(Kind::Histogram), "{histogram}");
    }
    for counter in ["session_store_operations_total", "http_requests_total"] {
        assert_eq!(after.kind(counter), Some(Kind::Counter), "{counter}");
    }
    for gauge in [
        "session_store_pool_connections",
        "session_store_pool_waiters",
    ] {
        assert_eq!(after.kind(gauge), Some(Kind::Gauge), "{gauge}");
    }
    assert_eq!(
        after.sum("session_store_state_bytes_count", &[("store", "demo:")]),
        1.0,
        "alice's login wrote one state"
    );

    // With Redis down, the same requests are answered 503 and counted as unavailable.
    redis.stop();
    let before = scrape(&api, &demo);
    for _ in 0..N {
        let me = api.call("GET", &demo, 0, "/api/me", Some(&cookie));
        assert_eq!(me.status, 503, "{me:?}");
    }
    let after = scrape(&api, &demo);
    let load_unavailable = [("operation", "load"), ("outcome", "unavailable")];
    let me_unavailable = [("method", "GET"), ("route", "/api/me"), ("status", "503")];
    assert_eq!(
        growth(
            &before,
            &after,
            "session_store_operations_total",
            &load_unavailable
        ),
        n
    );
    assert_eq!(
        growth(&before, &after, "http_requests_total", &me_unavailable),
        n
    );
    redis.restart().expect("Redis restarts");
    let me = api.call("GET", &demo, 0, "/api/me", Some(&cookie));
    assert_eq!(me.json["user"], "alice", "{me:?}");
}

#[test]
fn made_up_paths_and_methods_do_not_grow_the_label_set() {
    let demo = Demo::launch(1, &[]);
    let api = ApiClient::default();
    for id in 0..N {
        let response = api.call("GET", &demo, 0, &format!("/no/such/{id}"), None);
        assert_eq!(response.status, 404);
        let status = raw_request(demo.ports()[0], &format!("BREW /pot/{id}"));
        assert!(status.starts_with("HTTP/1.1 4"), "{status}");
    }
    let metrics = scrape(&api, &demo);
    let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "404")];
    assert_eq!(metrics.sum("http_requests_total", &unmatched), f64::from(N));
    assert_eq!(
        metrics.sum("http_requests_total", &[("method", "other")]),
        f64::from(N)
    );
    let routes: Vec<&str> = metrics
        .samples("http_requests_total", &[])
        .filter_map(|sample| sample.labels.get("route").map(String::as_str))
        .collect();
    assert!(
        routes
            .iter()
            .all(|route| !route.contains("/no/such") && !route.contains("/pot")),
        "{routes:?}"
    );
}

//! The store's metrics, read back through a recorder: each operation through the middleware
//! counts once, with the outcome it had.

use actix_web::{cookie::Key, http::Method};
use integration_tests::{
    RedisServer,
    recorder::{self, counter},
    session_app::{Gate, MiddlewareMode, get_entry, log_in, send, tracked_app},
};
use session_store::RedisSessionStore;

const N: u64 = 5;

fn operations(store: &str, operation: &str, outcome: &str) -> u64 {
    counter(
        "session_store_operations_total",
        &[
            ("store", store),
            ("operation", operation),
            ("outcome", outcome),
        ],
    )
}

#[actix_web::test]
async fn every_operation_counts_once_with_its_outcome() {
    recorder::install();
    let server = RedisServer::start();
    let store = server.store_with(
        RedisSessionStore::builder()
            .metrics_label("counted")
            .max_state_size(128),
    );
    let gate = Gate::default();
    let app = tracked_app(
        store,
        &Key::generate(),
        MiddlewareMode::COOKIE_MODES[0].clone(),
        gate.clone(),
    )
    .await;

    let mut cookies = Vec::new();
    for _ in 0..N {
        cookies.push(log_in(&app).await);
    }
    assert_eq!(operations("counted", "save", "ok"), N);
    for cookie in &cookies {
        assert_eq!(get_entry(&app, "user", Some(cookie)).await, "alice");
        send(&app, Method::POST, "/set/theme/dark", Some(cookie)).await;
    }
    assert_eq!(operations("counted", "load", "ok"), 2 * N);
    assert_eq!(operations("counted", "update", "ok"), N);
    for cookie in &cookies {
        send(&app, Method::POST, "/purge", Some(cookie)).await;
    }
    assert_eq!(operations("counted", "delete", "ok"), N);
    assert_eq!(get_entry(&app, "user", Some(&cookies[0])).await, "none");
    assert_eq!(operations("counted", "load", "not_found"), 1);

    let cookie = log_in(&app).await;
    let big = format!("/set/blob/{}", "x".repeat(100));
    assert_eq!(
        send(&app, Method::POST, &big, Some(&cookie)).await.status(),
        413
    );
    assert_eq!(operations("counted", "update", "too_large"), 1);

    // A write that loaded the session before a logout landed.
    let write = send(&app, Method::POST, "/gated-set/theme/light", Some(&cookie));
    let logout = async {
        gate.wait_for(1).await;
        send(&app, Method::POST, "/purge", Some(&cookie)).await;
        gate.open();
    };
    futures_util::join!(write, logout);
    assert_eq!(operations("counted", "update", "dropped"), 1);
}

#[actix_web::test]
async fn an_unavailable_redis_and_health_checks_are_counted() {
    recorder::install();
    let mut server = RedisServer::start();
    let store = server.store_with(
        RedisSessionStore::builder()
            .metrics_label("outage")
            .trust_window(std::time::Duration::ZERO),
    );
    let app = tracked_app(
        store,
        &Key::generate(),
        MiddlewareMode::COOKIE_MODES[0].clone(),
        Gate::default(),
    )
    .await;
    let cookie = log_in(&app).await;
    get_entry(&app, "user", Some(&cookie)).await;
    let passed = counter(
        "session_store_pool_checks_total",
        &[("store", "outage"), ("result", "ok")],
    );
    assert!(
        passed >= 1,
        "a connection reused with no trust window is checked"
    );

    server.stop();
    for _ in 0..3 {
        let response = send(&app, Method::GET, "/get/user", Some(&cookie)).await;
        assert_eq!(response.status(), 503);
    }
    assert_eq!(operations("outage", "load", "unavailable"), 3);
}

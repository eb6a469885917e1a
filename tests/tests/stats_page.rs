//! The stats page in headless Chromium, watching an instance under a little load: it draws
//! the instance's request and store operation rates, the unavailable line jumps while Redis is
//! stopped, and the ok line comes back after. Screenshots land with the others
//! (`stats.png` is `docs/stats.png`).

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use actix_web::cookie::Cookie;
use integration_tests::{
    RedisServer,
    browser::Browser,
    demo::{ApiClient, Demo},
};
use serde_json::{Value, json};

/// How long the page may take to show what the instance did: a second's sample, the next
/// poll, and slack for a busy machine.
const SHOWN_WITHIN: Duration = Duration::from_secs(10);

/// alice's `GET /api/me` on one instance, one every 25 ms after the last one's answer, until
/// stopped (or, at the latest, after two minutes).
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    fn start(url: String, cookie: Cookie<'static>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stopped, counted) = (Arc::clone(&stop), Arc::clone(&sent));
        let thread = thread::spawn(move || {
            let api = ApiClient::default();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                let _ = api.try_send("GET", &url, Some(&cookie), None::<Value>);
                counted.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(25));
            }
        });
        Self {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Stops the load and returns how many requests it sent.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the load thread");
        }
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The number a reading starts with (`12.5/s`, `0.31 ms`, `40 req/s`); `None` for `–`.
fn leading_number(text: &str) -> Option<f64> {
    let number: String = text
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number.parse().ok()
}

/// Waits until the number in the element `id` satisfies `wanted`, and returns it.
async fn wait_for_reading(browser: &Browser, id: &str, wanted: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + SHOWN_WITHIN;
    loop {
        let text = browser.text(id).await;
        if let Some(value) = leading_number(&text).filter(|value| wanted(*value)) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "#{id} still says {text:?} after {SHOWN_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stats_page_draws_the_instances_rates_and_the_outage_of_redis() {
    // Kept on disk, so that alice's session outlives the outage.
    let mut redis = RedisServer::start_with(&["--appendonly", "yes"]);
    let demo = Demo::launch(1, &["--redis-url", &redis.url()]);
    let login = ApiClient::default().send(
        "POST",
        &demo.url(0, "/api/login"),
        None,
        Some(json!({"username": "alice", "password": "alice-password"})),
    );
    let cookie = login.cookie.expect("a session cookie");
    let load = Load::start(demo.url(0, "/api/me"), cookie);

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let browser = Browser::start(shots.clone()).await;
    browser.open(&demo.url(0, "/stats")).await;
    let requests = wait_for_reading(&browser, "now-requests", |rate| rate > 0.0).await;
    let loads = wait_for_reading(&browser, "reading-operations-ok", |rate| rate > 0.0).await;
    wait_for_reading(&browser, "reading-durations-p99", |millis| millis > 0.0).await;
    // A few seconds of lines.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let line = browser
        .attribute("line-requests-ok", "d")
        .await
        .unwrap_or_default();
    assert!(
        line.matches('L').count() >= 3,
        "the request line has a few seconds drawn: {line:?}"
    );
    browser.screenshot("stats-under-load").await;

    redis.stop();
    let unavailable = wait_for_reading(&browser, "reading-operations-unavailable", |rate| {
        rate > 0.0
    })
    .await;
    wait_for_reading(&browser, "reading-requests-server_error", |rate| rate > 0.0).await;
    assert!(
        browser.text("stats-status").await.starts_with("Updated"),
        "the page keeps updating while Redis is down"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart().expect("Redis restarts");
    wait_for_reading(&browser, "reading-operations-unavailable", |rate| {
        rate == 0.0
    })
    .await;
    let back = wait_for_reading(&browser, "reading-operations-ok", |rate| rate > 0.0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shot = browser.screenshot("stats").await;
    browser.close().await;
    let sent = load.stop();
    println!(
        "{sent} requests sent; the page showed {requests} req/s and {loads} loads/s, \
         {unavailable} unavailable/s with Redis stopped, {back} loads/s after; screenshot {}",
        shot.display()
    );
}

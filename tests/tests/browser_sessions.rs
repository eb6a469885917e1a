//! The sessions page in headless Chromium: a laptop and a phone logged in as alice on two
//! instances; the laptop's home page shows the phone's login as it happens, its sessions page
//! lists both, and it logs the phone out; the phone's next click lands on the login page.
//! Screenshots go where the other browser tests put theirs (`sessions-two-devices.png` is
//! `docs/sessions.png`).

use std::path::PathBuf;

use integration_tests::{RedisServer, browser::Browser, demo::Demo};

/// What the second browser calls itself.
const PHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) \
    AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

async fn log_in(browser: &Browser, url: &str) {
    browser.open(url).await;
    browser.fill("username", "alice").await;
    browser.fill("password", "alice-password").await;
    browser.click("login").await;
    assert_eq!(browser.text("greeting").await, "Hello, alice!");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_device_logs_the_other_out_from_the_sessions_page() {
    let redis = RedisServer::start();
    let demo = Demo::launch(3, &["--redis-url", &redis.url()]);
    let ports = demo.ports().to_vec();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let laptop = Browser::start(shots.clone()).await;
    let phone = Browser::start_with(shots.clone(), &[&format!("--user-agent={PHONE}")]).await;

    log_in(&laptop, &demo.url(0, "/login")).await;
    log_in(&phone, &demo.url(1, "/login")).await;
    let line = format!("alice logged in on :{}", ports[1]);
    laptop.wait_for_text("activity-log", &line).await;
    laptop.screenshot("sessions-1-activity").await;

    phone.open(&demo.url(1, "/sessions")).await;
    let phone_session = phone
        .attribute("this-device", "data-reference")
        .await
        .expect("the phone's own row names its session");

    laptop.open(&demo.url(2, "/sessions")).await;
    let table = laptop.text("sessions").await;
    assert!(table.contains("Headless Chrome on Linux"), "{table}");
    assert!(table.contains("Safari on iPhone"), "{table}");
    assert!(table.contains(&format!(":{}", ports[1])), "{table}");
    assert_eq!(laptop.text("this-device").await, "this device");
    let shot = laptop.screenshot("sessions-two-devices").await;

    laptop.click(&format!("revoke-{phone_session}")).await;
    assert_eq!(laptop.text("notice").await, "Logged out 1 other session.");
    let table = laptop.text("sessions").await;
    assert!(!table.contains("iPhone"), "{table}");
    laptop.screenshot("sessions-3-phone-logged-out").await;

    // The phone still shows its page; its next click finds no session.
    phone.click("sessions-link").await;
    assert_eq!(phone.path().await, "/login");
    phone.screenshot("sessions-4-phone-sent-to-login").await;

    laptop.open(&demo.url(0, "/")).await;
    let user = laptop.text("signed-in-user").await;
    assert_eq!(user, "alice", "the laptop stays");
    laptop.close().await;
    phone.close().await;
    println!("the sessions page: {}", shot.display());
}

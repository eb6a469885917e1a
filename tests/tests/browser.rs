//! A person's walk through the demo in headless Chromium: log in on one instance, be known on
//! the next, log out on a third, and be logged out everywhere. Screenshots of every step are
//! saved under the test's output folder.

use std::path::PathBuf;

use integration_tests::{RedisServer, browser::Browser, demo::Demo};

#[tokio::test(flavor = "multi_thread")]
async fn login_follows_the_user_across_instances() {
    let redis = RedisServer::start();
    let demo = Demo::launch(3, &["--redis-url", &redis.url()]);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let browser = Browser::start(shots.clone()).await;
    let port = |index: usize| format!(":{}", demo.ports()[index]);

    browser.open(&demo.url(0, "/")).await;
    assert_eq!(browser.text("greeting").await, "Hello, stranger!");
    browser.open(&demo.url(0, "/login")).await;
    browser.fill("username", "alice").await;
    browser.fill("password", "alice-password").await;
    browser.screenshot("1-login-form").await;
    browser.click("login").await;
    assert_eq!(browser.text("greeting").await, "Hello, alice!");
    assert!(browser.text("instance").await.ends_with(&port(0)));
    browser.screenshot("2-signed-in-on-first").await;

    browser.open(&demo.url(1, "/")).await;
    let user = browser.text("signed-in-user").await;
    assert_eq!(user, "alice", "the second instance does not know alice");
    assert!(browser.text("instance").await.ends_with(&port(1)));
    browser.screenshot("3-known-on-second").await;

    browser.open(&demo.url(1, "/profile")).await;
    browser.fill("display_name", "Alice Liddell").await;
    browser.click("save").await;
    browser.open(&demo.url(2, "/")).await;
    assert_eq!(browser.text("greeting").await, "Hello, Alice Liddell!");
    browser.screenshot("4-profile-seen-on-third").await;

    browser.click("logout").await;
    assert_eq!(browser.text("greeting").await, "Hello, stranger!");
    assert!(browser.text("instance").await.ends_with(&port(2)));
    browser.screenshot("5-logged-out-on-third").await;

    for index in [0, 1] {
        browser.open(&demo.url(index, "/")).await;
        assert_eq!(
            browser.text("greeting").await,
            "Hello, stranger!",
            "instance {index} still knows alice"
        );
    }
    browser.screenshot("6-logged-out-everywhere").await;

    browser.open(&demo.url(0, "/login")).await;
    browser.fill("username", "alice").await;
    browser.fill("password", "wrong").await;
    browser.click("login").await;
    assert_eq!(
        browser.text("error").await,
        "Unknown username or wrong password."
    );
    browser.screenshot("7-wrong-password").await;

    browser.close().await;
    println!("screenshots in {}", shots.display());
}

/// Through the load balancer: log in at its one address, refresh, and the page lists the
/// instances that served the last page views, more than one of them.
#[tokio::test(flavor = "multi_thread")]
async fn the_balancer_spreads_page_views_and_each_page_lists_who_served_them() {
    let demo = Demo::launch_with_balancer(3, &[]);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let browser = Browser::start(shots.clone()).await;

    browser.open(&demo.balancer_url("/login")).await;
    browser.fill("username", "alice").await;
    browser.fill("password", "alice-password").await;
    browser.click("login").await;
    assert_eq!(browser.text("greeting").await, "Hello, alice!");

    let mut served_by = Vec::new();
    for _ in 0..5 {
        browser.open(&demo.balancer_url("/")).await;
        assert_eq!(browser.text("signed-in-user").await, "alice");
        served_by.push(browser.text("instance").await);
    }
    let summary = browser.text("history-summary").await;
    // The login form, the page the login led to, and five refreshes.
    assert!(
        summary.starts_with("Your last 7 page views came from "),
        "{summary}"
    );
    assert!(
        !summary.contains("from 1 instance"),
        "{summary} (the pages said {served_by:?})"
    );
    let latest = browser.text("served-by-latest").await;
    let newest = served_by.last().expect("five page views");
    assert!(
        newest.ends_with(&latest),
        "the newest entry {latest:?} is not the page's own instance {newest:?}"
    );
    let shot = browser.screenshot("balancer-history").await;
    browser.close().await;
    println!(
        "{summary} (refreshes: {served_by:?}); screenshot {}",
        shot.display()
    );
}

//! The demo on a Redis Cluster and behind Sentinel: the launcher's private ones
//! (`--topology`), and a cluster of the test's own (`--redis-cluster`) whose primary the test
//! kills while alice is logged in.

use std::time::{Duration, Instant};

use integration_tests::{
    demo::{ApiClient, ApiResponse, Demo},
    deployment::cluster_failing_over_after,
};
use serde_json::{Value, json};

fn log_in(api: &ApiClient, demo: &Demo) -> actix_web::cookie::Cookie<'static> {
    let login = api.send(
        "POST",
        &demo.url(0, "/api/login"),
        None,
        Some(json!({"username": "alice", "password": "alice-password"})),
    );
    assert_eq!(login.status, 200, "{:?}", login.json);
    login.cookie.expect("a session cookie")
}

fn me(
    api: &ApiClient,
    demo: &Demo,
    instance: usize,
    cookie: &actix_web::cookie::Cookie<'static>,
) -> ApiResponse {
    api.send(
        "GET",
        &demo.url(instance, "/api/me"),
        Some(cookie),
        None::<Value>,
    )
}

/// The ports in the launcher's line about its private Redis (the password shown as `***`).
fn private_redis_ports(demo: &Demo) -> Vec<u16> {
    let line = demo
        .line_starting("Started a private Redis")
        .expect("the launcher says which Redis it started");
    assert!(
        line.contains("redis://:***@") || !line.contains('@'),
        "{line}"
    );
    line.split("127.0.0.1:")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// What the server on `port` answers a client without a password.
fn ping_without_password(port: u16) -> String {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("a URL");
    let mut connection = client.get_connection().expect("a connection");
    match redis::cmd("PING").query::<String>(&mut connection) {
        Ok(pong) => pong,
        Err(err) => err.to_string(),
    }
}

fn assert_refused(ports: &[u16]) {
    assert!(!ports.is_empty());
    for &port in ports {
        let answer = ping_without_password(port);
        assert!(answer.contains("NOAUTH"), "port {port}: {answer}");
    }
}

#[test]
fn the_launchers_single_redis_refuses_clients_without_its_password() {
    let demo = Demo::launch(2, &[]);
    let api = ApiClient::default();
    let cookie = log_in(&api, &demo);
    assert_eq!(me(&api, &demo, 1, &cookie).json["user"], "alice");
    let ports = private_redis_ports(&demo);
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_refused(&ports);
}

#[test]
fn the_launchers_cluster_shares_logins_and_shows_each_sessions_slot() {
    let demo = Demo::launch(3, &["--topology", "cluster"]);
    let api = ApiClient::default();
    let cookie = log_in(&api, &demo);
    let ports = private_redis_ports(&demo);
    assert_eq!(
        ports.len(),
        6,
        "every node, primaries and replicas: {ports:?}"
    );
    assert_refused(&ports);
    for instance in 1..3 {
        let me = me(&api, &demo, instance, &cookie);
        assert_eq!(me.json["user"], "alice");
        assert_eq!(me.json["redis"]["topology"], "cluster");
        assert!(me.json["redis"]["slot"].is_u64(), "{:?}", me.json);
        assert!(me.json["redis"]["node"].is_string(), "{:?}", me.json);
    }
    let home = api.get_page(&demo.url(2, "/"), &[&cookie]);
    assert!(home.text.contains("id=\"redis-slot\""), "{}", home.text);
}

#[test]
fn the_launchers_sentinel_setup_shares_logins_and_names_the_primary() {
    let demo = Demo::launch(2, &["--topology", "sentinel"]);
    let api = ApiClient::default();
    let cookie = log_in(&api, &demo);
    let me = me(&api, &demo, 1, &cookie);
    assert_eq!(me.json["user"], "alice");
    assert_eq!(me.json["redis"]["topology"], "sentinel");
    assert!(me.json["redis"]["node"].is_string(), "{:?}", me.json);
    assert!(me.json["redis"]["slot"].is_null());

    // The sentinels (in the banner) and the primary they name (the one the session is on)
    // refuse a client without the password.
    let mut ports = private_redis_ports(&demo);
    assert_eq!(ports.len(), 3, "the sentinels: {ports:?}");
    let node = me.json["redis"]["node"].as_str().expect("a node");
    ports.push(
        node.rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .expect("host:port"),
    );
    assert_refused(&ports);
}

#[test]
fn alice_stays_logged_in_when_her_shards_primary_dies() {
    // A node timeout quicker than the default one, which is made for clusters where nothing
    // is killed.
    let mut cluster = cluster_failing_over_after(Duration::from_secs(2));
    let nodes: Vec<String> = cluster.nodes().iter().map(|node| node.address()).collect();
    let demo = Demo::launch(3, &["--redis-cluster", &nodes.join(",")]);
    let api = ApiClient::default();
    let cookie = log_in(&api, &demo);
    let before = me(&api, &demo, 1, &cookie);
    let node = before.json["redis"]["node"]
        .as_str()
        .expect("a node")
        .to_owned();
    let victim = cluster
        .nodes()
        .iter()
        .position(|server| server.address() == node)
        .expect("the node is one of ours");

    cluster.stop(victim);
    // Until the replica takes over, her requests may get 503s; then she is still alice, on
    // the promoted replica.
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let me = me(&api, &demo, 2, &cookie);
        assert!(
            [200, 503].contains(&me.status),
            "{}: {:?}",
            me.status,
            me.json
        );
        if me.status == 200
            && me.json["redis"]["node"]
                .as_str()
                .is_some_and(|now| now != node)
        {
            break me;
        }
        assert!(Instant::now() < deadline, "no failover: {:?}", me.json);
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(after.json["user"], "alice", "logged out by the failover");
    assert_eq!(after.json["redis"]["slot"], before.json["redis"]["slot"]);
    for instance in 0..3 {
        assert_eq!(me(&api, &demo, instance, &cookie).json["user"], "alice");
    }
    let home = api.get_page(&demo.url(0, "/"), &[&cookie]);
    let new_node = after.json["redis"]["node"].as_str().expect("a node");
    assert!(home.text.contains(new_node), "the page shows the new node");
}

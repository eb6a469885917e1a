//! One `redis-server`: it starts, stops, restarts with its data, and leaves nothing behind.

mod common;

use common::{a_missing_binary_says_how_to_install_it, alive, connect, timed};
use local_redis::RedisServer;

#[test]
fn a_server_restarts_on_its_port_with_its_aof_data() {
    let mut server = timed("single server answers", || {
        RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"])
    })
    .expect("redis-server starts");
    let port = server.port();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
    let () = redis::cmd("SET")
        .arg("kept")
        .arg("across restarts")
        .query(&mut connect(&server))
        .expect("SET");

    server.stop();
    assert!(!server.is_running());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a stopped server refuses connections"
    );

    timed("single server restarts", || server.restart()).expect("it restarts");
    assert_eq!(server.port(), port);
    let kept: Option<String> = redis::cmd("GET")
        .arg("kept")
        .query(&mut connect(&server))
        .expect("GET");
    assert_eq!(kept.as_deref(), Some("across restarts"));
}

#[test]
fn a_dropped_server_leaves_no_process_behind() {
    let server = RedisServer::start(&[]).expect("redis-server starts");
    let pid = server.pid();
    assert!(alive(pid));
    drop(server);
    assert!(!alive(pid), "redis-server {pid} outlived its owner");
}

#[test]
fn a_panicking_owner_leaves_no_process_behind() {
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let outcome = std::panic::catch_unwind(move || {
        let server = RedisServer::start(&[]).expect("redis-server starts");
        pid_tx.send(server.pid()).expect("the test listens");
        panic!("a test failing halfway");
    });
    assert!(outcome.is_err());
    let pid = pid_rx.recv().expect("the server had started");
    assert!(!alive(pid), "redis-server {pid} outlived a panic");
}

#[test]
fn a_server_that_cannot_start_says_why() {
    let err = RedisServer::start(&["--no-such-option", "yes"]).expect_err("a bad option");
    assert!(
        err.to_string().contains("no-such-option"),
        "the error quotes the server's complaint: {err}"
    );
}

#[test]
fn a_missing_redis_server_is_an_error_that_says_how_to_install_it() {
    a_missing_binary_says_how_to_install_it(
        (
            "a_missing_redis_server_is_an_error_that_says_how_to_install_it",
            "REDIS_SERVER_BIN",
            "/nonexistent/redis-server",
        ),
        "apt-get install redis-server",
        || RedisServer::start(&[]),
    );
}

//! What the process tests share: timing, connections, and looking for leftover processes.

#![allow(dead_code, unreachable_pub)] // Each test file uses its own part of this.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use local_redis::{Error, RedisCluster, RedisServer};

/// Runs `step`, prints how long it took (`--nocapture` shows it) and returns its result.
pub fn timed<T>(what: &str, step: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = step();
    println!("{what}: {:.2} s", started.elapsed().as_secs_f64());
    result
}

/// A plain connection to `server`.
pub fn connect(server: &RedisServer) -> redis::Connection {
    let connection = redis::Client::open(server.url())
        .expect("a loopback URL")
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("the server answers");
    connection
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a timeout");
    connection
}

/// `INFO replication`'s `role` of `server`: `master` or `slave`.
pub fn role(server: &RedisServer) -> String {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut connect(server))
        .expect("INFO replication");
    info.lines()
        .find_map(|line| line.trim_end().strip_prefix("role:"))
        .expect("a role line")
        .to_owned()
}

/// Whether process `pid` still exists (a killed child is reaped, so it no longer does).
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Asserts that none of the processes `pids` exists any more; `outlived` says what it means
/// if one does.
pub fn assert_none_alive(pids: &[u32], outlived: &str) {
    assert!(pids.iter().all(|&pid| !alive(pid)), "{outlived}");
}

/// The body of the test `name`, which checks that `start` without its binary fails with
/// [`Error::NotInstalled`] saying `how_to_install`: run again alone with `variable` naming
/// `missing`, a path where nothing is (see [`passes_alone_with`]).
pub fn a_missing_binary_says_how_to_install_it<T: std::fmt::Debug>(
    (name, variable, missing): (&str, &str, &str),
    how_to_install: &str,
    start: impl FnOnce() -> Result<T, Error>,
) {
    if std::env::var_os(variable).is_some_and(|bin| bin == missing) {
        let err = start().expect_err("no such binary");
        assert!(matches!(err, Error::NotInstalled { .. }), "{err:?}");
        assert!(err.to_string().contains(how_to_install), "{err}");
        return;
    }
    assert!(passes_alone_with(name, variable, missing));
}

/// Runs the test `name` of this test binary again in a process of its own with `variable` set
/// to `value`, and says whether it passed. Setting the variable in this process would race
/// the tests running beside it on other threads.
pub fn passes_alone_with(name: &str, variable: &str, value: &str) -> bool {
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", name, "--nocapture"])
        .env(variable, value)
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    // A filter matching nothing passes too: make sure the test ran.
    output.status.success() && stdout.contains("1 passed")
}

/// Sets `key` through node `first`, following `MOVED` redirections the way a cluster client
/// would; returns the node that took it.
pub fn set_following_moved(cluster: &RedisCluster, first: usize, key: &str, value: &str) -> usize {
    let mut node = first;
    for _ in 0..3 {
        let reply: redis::RedisResult<()> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query(&mut connect(cluster.node(node)));
        let Err(err) = reply else { return node };
        let (address, _slot) = err.redirect_node().expect("only MOVED redirections");
        node = cluster
            .nodes()
            .iter()
            .position(|node| node.address() == address)
            .expect("redirected to one of our nodes");
    }
    panic!("{key} was redirected more than twice");
}

/// `GET key` on node `node`, which must serve its slot.
pub fn get(cluster: &RedisCluster, node: usize, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut connect(cluster.node(node)))
        .expect("GET on the key's own node")
}

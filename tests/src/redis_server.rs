//! A `redis-server` process of the test's own.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use tempfile::TempDir;

const INSTALL_HINT: &str = "redis-server was not found. Install it with \
    `sudo apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS), \
    or set REDIS_SERVER_BIN to its path. `scripts/test` installs it for you.";

/// How long a fresh server may take to answer its first PING.
const STARTUP: Duration = Duration::from_secs(10);

/// A `redis-server` on a free loopback port, killed when dropped.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server that keeps nothing on disk.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `["--maxclients", "10"]`).
    pub fn start_with(args: &[&str]) -> Self {
        // A free port can be taken by someone else between our probe and redis binding it:
        // try a few.
        let mut last_failure = String::new();
        for _ in 0..5 {
            match Self::try_start(args) {
                Ok(server) => return server,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("redis-server did not start: {last_failure}");
    }

    fn try_start(args: &[&str]) -> Result<Self, String> {
        let port = free_port();
        let dir = tempfile::tempdir().map_err(|err| format!("no temporary dir: {err}"))?;
        let log = dir.path().join("redis.log");
        let child = Command::new(binary())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|err| match err.kind() {
                ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
                _ => format!("could not run redis-server: {err}"),
            })?;
        let mut server = Self { child, port, dir };
        server.wait_until_ready()?;
        Ok(server)
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited with {status}; log: {}", self.log()));
            }
            if ping(self.port) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!("no answer within {STARTUP:?}; log: {}", self.log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// The port the server listens on (loopback only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A client for inspecting the server from the test.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a valid loopback URL")
    }

    /// A connection for inspecting the server from the test.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .expect("the test's own Redis answers")
    }

    /// The folder the server runs in.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

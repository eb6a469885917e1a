//! A private `redis-server` process on a free loopback port, stopped when dropped: the
//! launcher's Redis when none is given, and the test suites' Redis.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use tempfile::TempDir;

/// How long a fresh server may take to answer its first `PING`.
const STARTUP: Duration = Duration::from_secs(10);

/// Why a private Redis could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisServerError {
    /// The `redis-server` binary is not there.
    #[error(
        "redis-server is not installed. Install it with `sudo apt-get install redis-server` \
         (Debian/Ubuntu) or `brew install redis` (macOS), or set REDIS_SERVER_BIN to its path"
    )]
    NotInstalled,
    /// It is there but did not come up.
    #[error("redis-server did not start: {0}")]
    Start(String),
}

/// A `redis-server` child process that keeps its files in a temporary folder.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: TempDir,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a server that keeps nothing on disk, with `extra_args` appended to its command
    /// line (e.g. `["--appendonly", "yes"]`).
    ///
    /// # Errors
    /// When `redis-server` is missing or does not answer within ten seconds.
    pub fn start(extra_args: &[&str]) -> Result<Self, RedisServerError> {
        // Another process can take the free port between our probe and redis binding it.
        let mut failure = RedisServerError::Start("no attempt made".to_owned());
        for _ in 0..5 {
            match Self::try_start(extra_args) {
                Ok(server) => return Ok(server),
                Err(RedisServerError::NotInstalled) => return Err(RedisServerError::NotInstalled),
                Err(err) => failure = err,
            }
        }
        Err(failure)
    }

    fn try_start(extra_args: &[&str]) -> Result<Self, RedisServerError> {
        let port = free_port().map_err(|err| RedisServerError::Start(err.to_string()))?;
        let dir = tempfile::tempdir().map_err(|err| RedisServerError::Start(err.to_string()))?;
        let args: Vec<String> = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
        let child = spawn(port, dir.path(), &args)?;
        let mut server = Self {
            child,
            port,
            dir,
            args,
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    /// Stops the server, as an outage would; [`restart`](Self::restart) brings it back.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port, with the same folder and arguments (so with
    /// its data, when it keeps any), as after an outage.
    ///
    /// # Errors
    /// When it does not come back within ten seconds.
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        self.stop();
        self.child = spawn(self.port, self.dir.path(), &self.args)?;
        self.wait_until_ready()
    }

    fn wait_until_ready(&mut self) -> Result<(), RedisServerError> {
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(RedisServerError::Start(format!(
                    "it exited with {status}; its log says: {}",
                    self.log()
                )));
            }
            if serves_as(self.port, self.child.id()) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(RedisServerError::Start(format!(
            "no answer within {STARTUP:?}; its log says: {}",
            self.log()
        )))
    }

    /// What the server wrote to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(port: u16, dir: &Path, extra_args: &[String]) -> Result<Child, RedisServerError> {
    Command::new(binary())
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--logfile", "redis.log"])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| match err.kind() {
            ErrorKind::NotFound => RedisServerError::NotInstalled,
            _ => RedisServerError::Start(err.to_string()),
        })
}

fn binary() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether the Redis on `port` answers and is the process `pid`: another server that took the
/// port in the meantime must not pass for ours.
fn serves_as(port: u16, pid: u32) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"INFO server\r\n").is_err() {
        return false;
    }
    // The reply is one bulk string of a few KiB; read until its process_id line is complete.
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(read @ 1..) = stream.read(&mut chunk) {
        reply.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&reply);
        // Only a line followed by CRLF is whole: leave out what follows the last one.
        let whole = text.rsplit_once("\r\n").map_or("", |(whole, _)| whole);
        if let Some(id) = whole
            .lines()
            .find_map(|line| line.trim_end().strip_prefix("process_id:"))
        {
            return id == pid.to_string();
        }
    }
    false
}

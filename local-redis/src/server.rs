//! One `redis-server` process (a plain server, a cluster node or a sentinel) on a free loopback
//! port, with its files in a temporary folder, killed when dropped.

use std::{ffi::OsString, path::Path, process::Child, time::Duration};

use tempfile::TempDir;

use crate::{
    Error,
    ports::free_port,
    probe,
    programs::REDIS_SERVER,
    wait::{self, NotYet},
};

/// How long a fresh process may take to answer.
const STARTUP: Duration = Duration::from_secs(10);

/// How many fresh ports a start tries: another process can take a free port between our probe
/// and the server binding it.
const ATTEMPTS: usize = 5;

/// The log file, in the process's folder.
const LOG: &str = "redis.log";

/// Where its standard output and error go: what it says before its log is open (a bad
/// argument, a port in use).
const OUTPUT: &str = "output.log";

/// What a process is started with, beyond what every process gets (its port, its folder, its
/// log, no persistence unless the arguments ask for it).
#[derive(Debug, Default)]
pub(crate) struct Launch {
    /// A configuration file, by name and contents, written into the process's folder and named
    /// first on its command line. Sentinel needs one it can rewrite; a server that Sentinel
    /// reconfigures keeps the change in it (`CONFIG REWRITE`) across a restart.
    pub(crate) config: Option<(&'static str, String)>,
    /// Arguments after the common ones, which they can override.
    pub(crate) args: Vec<String>,
}

/// A private `redis-server` process on a free loopback port, killed when dropped.
///
/// It keeps its files (log, data, `nodes.conf`, `sentinel.conf`) in a temporary folder of its
/// own, which outlives a [`stop`](Self::stop), so a [`restart`](Self::restart) finds them.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    stopped: bool,
    port: u16,
    args: Vec<OsString>,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server that keeps nothing on disk, with `extra_args` appended to its command
    /// line (e.g. `["--appendonly", "yes"]`), and waits until it answers.
    ///
    /// # Errors
    /// When `redis-server` is missing ([`Error::NotInstalled`]), exits (the error quotes what
    /// it said) or does not answer within ten seconds. A port taken by another process before
    /// the server bound it is no error: it tries up to five fresh ports.
    pub fn start(extra_args: &[&str]) -> Result<Self, Error> {
        let args: Vec<String> = extra_args.iter().map(|&arg| arg.to_owned()).collect();
        Self::launch(|| {
            Ok(Launch {
                config: None,
                args: args.clone(),
            })
        })
    }

    /// Starts a process from what `launch` makes (asked again for each fresh port, so that it
    /// can pick other ports of its own too) and waits until it answers.
    pub(crate) fn launch(mut launch: impl FnMut() -> Result<Launch, Error>) -> Result<Self, Error> {
        let mut attempt = 1;
        loop {
            match Self::try_launch(launch()?) {
                Err(err) if attempt < ATTEMPTS && lost_its_port(&err) => attempt += 1,
                result => return result,
            }
        }
    }

    fn try_launch(launch: Launch) -> Result<Self, Error> {
        let port = free_port()?;
        let dir = tempfile::Builder::new().prefix("local-redis-").tempdir()?;
        let mut args = Vec::new();
        if let Some((name, contents)) = launch.config {
            let path = dir.path().join(name);
            std::fs::write(&path, contents)?;
            args.push(path.into_os_string());
        }
        args.extend(common_args(port, dir.path()));
        args.extend(launch.args.into_iter().map(OsString::from));
        let child = REDIS_SERVER.spawn(&args, &dir.path().join(OUTPUT))?;
        let mut server = Self {
            child,
            stopped: false,
            port,
            args,
            dir,
        };
        server.wait_until_serving()?;
        Ok(server)
    }

    /// Kills the process (`SIGKILL`), as a crash or an outage would: it saves nothing on the
    /// way out. [`restart`](Self::restart) brings it back.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stopped = true;
    }

    /// Starts the process again on the same port, with the same folder and arguments (so with
    /// its data when it keeps any, and a cluster node or sentinel with its identity), and waits
    /// until it answers. Stops it first when it runs.
    ///
    /// # Errors
    /// When it exits or does not answer within ten seconds (another process may have taken its
    /// port meanwhile); it is then stopped.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop();
        self.child = REDIS_SERVER.spawn(&self.args, &self.dir.path().join(OUTPUT))?;
        self.stopped = false;
        self.wait_until_serving().inspect_err(|_| self.stop())
    }

    fn wait_until_serving(&mut self) -> Result<(), Error> {
        let what = format!("{} on port {} to answer", REDIS_SERVER.name(), self.port);
        wait::until(&what, STARTUP, || {
            if let Some(status) = self.child.try_wait().map_err(Error::from)? {
                return Err(NotYet::Failed(Error::Exited {
                    process: format!("{} on port {}", REDIS_SERVER.name(), self.port),
                    status,
                    log: self.output_and_log(),
                }));
            }
            wait::ensure(probe::serves_as(self.port, self.child.id()), || {
                format!("no answer yet; it says:\n{}", self.output_and_log())
            })
        })
    }

    /// Whether the process runs: it was started and not [stopped](Self::stop) since.
    pub fn is_running(&self) -> bool {
        !self.stopped
    }

    /// What the process wrote to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG)).unwrap_or_default()
    }

    fn output_and_log(&self) -> String {
        let output = std::fs::read_to_string(self.dir.path().join(OUTPUT)).unwrap_or_default();
        format!("{output}{}", self.log())
    }

    /// The folder it keeps its files in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its process id (the last one's, when stopped).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:{port}`, as `redis-cli` and Redis's own replies write addresses.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
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

/// Whether the process failed because another one took one of its ports first.
fn lost_its_port(err: &Error) -> bool {
    matches!(err, Error::Exited { log, .. } if log.contains("Address already in use"))
}

/// What every process gets: loopback only, its folder, its log, and nothing kept on disk.
fn common_args(port: u16, dir: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--logfile",
        LOG,
        "--dir",
    ]
    .map(OsString::from)
    .into();
    args.push(dir.as_os_str().to_owned());
    args
}

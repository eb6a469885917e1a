//! The two programs this crate runs, taken from `PATH` unless an environment variable, read at
//! run time, points elsewhere.

use std::{
    ffi::OsString,
    fs::OpenOptions,
    io::ErrorKind,
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use crate::Error;

/// A program, the variable that overrides where it is, and how to install it.
#[derive(Debug)]
pub(crate) struct Program {
    name: &'static str,
    variable: &'static str,
    install: &'static str,
}

/// The server, which also runs Sentinel (`--sentinel`).
pub(crate) const REDIS_SERVER: Program = Program {
    name: "redis-server",
    variable: "REDIS_SERVER_BIN",
    install: "`sudo apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS)",
};

/// The client, for `--cluster` subcommands.
pub(crate) const REDIS_CLI: Program = Program {
    name: "redis-cli",
    variable: "REDIS_CLI_BIN",
    install: "`sudo apt-get install redis-tools` (Debian/Ubuntu; redis-server brings it) or \
              `brew install redis` (macOS)",
};

/// Whether programs started from now on run in a process group of their own.
static APART: AtomicBool = AtomicBool::new(false);

/// Servers (and every other program this crate runs) started from now on run in a process
/// group of their own, out of reach of a Ctrl-C at the terminal, which signals the whole
/// foreground group at once: for a program that stops them itself, after what uses them
/// (the demo's launcher). They still stop when dropped; a caller killed outright leaves them
/// running unless it has a watchdog of its own, so tests, whose servers must die with a
/// Ctrl-C'd run, leave this off.
pub fn start_apart_from_the_terminal() {
    APART.store(true, Ordering::Release);
}

impl Program {
    /// The program's name, for messages.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Starts the program with `args`, its output appended to the file `output` (which, unlike
    /// a pipe, it cannot fill up while nobody reads) and nothing on its input.
    pub(crate) fn spawn(&self, args: &[OsString], output: &Path) -> Result<Child, Error> {
        let file = OpenOptions::new().create(true).append(true).open(output)?;
        let errors = file.try_clone()?;
        let mut command = Command::new(self.path());
        if APART.load(Ordering::Acquire) {
            command.process_group(0);
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(errors)
            .spawn()
            .map_err(|source| match source.kind() {
                ErrorKind::NotFound => Error::NotInstalled {
                    program: self.name,
                    variable: self.variable,
                    install: self.install,
                },
                _ => Error::Spawn {
                    program: self.name,
                    source,
                },
            })
    }

    /// Runs the program to its end, for at most `timeout`, with its output in the file `log`;
    /// returns that output.
    pub(crate) fn run(
        &self,
        args: &[OsString],
        log: &Path,
        timeout: Duration,
    ) -> Result<String, Error> {
        let mut child = self.spawn(args, log)?;
        let output = || std::fs::read_to_string(log).unwrap_or_default();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                if status.success() {
                    return Ok(output());
                }
                return Err(Error::Exited {
                    process: self.name.to_owned(),
                    status,
                    log: output(),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout {
                    what: format!("{} to finish", self.name),
                    waited: timeout,
                    last: output(),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn path(&self) -> OsString {
        std::env::var_os(self.variable).unwrap_or_else(|| self.name.into())
    }
}

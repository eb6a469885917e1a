//! What ends the launcher's other children when the launcher is killed outright (`kill -9`,
//! an out-of-memory kill), which gives it no chance to stop them: a small process of its own
//! (`demo-app watchdog`, hidden) that reads, on a pipe from the launcher, the processes
//! (Redis, nginx) and folders to clean up, and when the pipe closes, kills those processes
//! that are still the ones it was told of and removes those folders. The instances need none
//! of it: they stop by themselves when their own pipe from the launcher closes.
//!
//! After a launcher that stopped normally there is nothing left for it to do: the processes
//! are gone (a process id used again since belongs to a process started later, which the
//! watchdog leaves alone) and so are the folders.

use std::{
    io::{BufRead as _, Write as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
};

use anyhow::Context as _;
use nix::{sys::signal, unistd::Pid};

/// The launcher's end of the pipe.
pub(super) struct Watchdog {
    stdin: ChildStdin,
    _child: Child,
}

impl Watchdog {
    /// Starts the watchdog process, in a process group of its own: a Ctrl-C at the terminal
    /// must not end it before the launcher it watches.
    ///
    /// # Errors
    /// When it cannot be started.
    pub(super) fn start() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the demo-app binary")?;
        let mut child = Command::new(exe)
            .process_group(0)
            .arg("watchdog")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the watchdog")?;
        let stdin = child.stdin.take().context("the watchdog's pipe")?;
        Ok(Self {
            stdin,
            _child: child,
        })
    }

    /// Process `pid` is to be killed if the launcher dies.
    pub(super) fn process(&mut self, pid: u32) {
        if let Some(started) = start_time(pid) {
            self.say(&format!("pid {pid} {started}"));
        }
    }

    /// Folder `dir` is to be removed if the launcher dies.
    pub(super) fn folder(&mut self, dir: &Path) {
        if let Some(dir) = dir.to_str() {
            self.say(&format!("dir {dir}"));
        }
    }

    fn say(&mut self, line: &str) {
        // A watchdog that is gone cannot help; the launcher goes on without it.
        let _ = writeln!(self.stdin, "{line}");
    }
}

/// `demo-app watchdog`: reads what to clean up until its standard input closes, then cleans
/// it up.
pub fn run() {
    let mut processes = Vec::new();
    let mut folders = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.split_once(' ') {
            Some(("pid", rest)) => {
                let mut words = rest.split(' ').map(str::parse::<u64>);
                if let (Some(Ok(pid)), Some(Ok(started))) = (words.next(), words.next()) {
                    processes.push((pid, started));
                }
            }
            Some(("dir", dir)) => folders.push(PathBuf::from(dir)),
            _ => {}
        }
    }
    for (pid, started) in processes {
        let Ok(pid) = u32::try_from(pid) else {
            continue;
        };
        if start_time(pid) == Some(started)
            && let Ok(raw) = i32::try_from(pid)
        {
            let _ = signal::kill(Pid::from_raw(raw), signal::Signal::SIGKILL);
        }
    }
    for folder in folders {
        let _ = std::fs::remove_dir_all(folder);
    }
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat`'s 22nd field):
/// with its id, what tells it from a later process that got the same id.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after its end.
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_known_by_its_start_time() {
        let own = std::process::id();
        let started = start_time(own).expect("this process's start time");
        assert_eq!(start_time(own), Some(started));
        assert!(start_time(u32::MAX).is_none());
    }
}

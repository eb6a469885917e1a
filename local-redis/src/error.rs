//! Why Redis processes could not be started, stopped in order, or asked about themselves.

use std::{process::ExitStatus, time::Duration};

/// Every failure of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The program is not there (neither on `PATH` nor where its variable points).
    #[error("{program} is not installed. Install it with {install}, or set {variable} to its path")]
    NotInstalled {
        /// `redis-server` or `redis-cli`.
        program: &'static str,
        /// The environment variable that overrides where it is.
        variable: &'static str,
        /// The command that installs it.
        install: &'static str,
    },
    /// The program is there but could not be run.
    #[error("{program} could not be run: {source}")]
    Spawn {
        /// `redis-server` or `redis-cli`.
        program: &'static str,
        /// What the system said.
        source: std::io::Error,
    },
    /// A process ended on its own while it was expected to run.
    #[error("{process} exited with {status}; its log says:\n{log}")]
    Exited {
        /// Which process, with its port.
        process: String,
        /// How it ended.
        status: ExitStatus,
        /// What it wrote to its log (or its output).
        log: String,
    },
    /// What was awaited did not happen in time.
    #[error("waited {waited:?} for {what}; the last check said: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// For how long.
        waited: Duration,
        /// Why the last check failed: the condition still missing.
        last: String,
    },
    /// The processes are not in the shape this crate made them (a sentinel naming a primary
    /// that is none of ours, a question with no running node to ask).
    #[error("unexpected topology: {0}")]
    Topology(String),
    /// A temporary folder, configuration file or free port could not be had.
    #[error("preparing a Redis process failed: {0}")]
    Io(#[from] std::io::Error),
    /// A question to a running process failed.
    #[error("asking Redis failed: {0}")]
    Redis(#[from] redis::RedisError),
}

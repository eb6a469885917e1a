//! Where the demo's log lines go: standard error, through a writer on a thread of its own, so
//! that no request ever waits on it. When standard error stalls (the launcher's output piped
//! into a pager, scroll-lock), lines that find the writer's queue full are dropped, never a
//! request, and counted: `demo_log_lines_dropped_total` on `/metrics`. When it is gone (the
//! launcher was killed), the writer's failed writes are lost without a count, and without a
//! panic.

use std::{io::IsTerminal as _, sync::OnceLock};

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines that may wait for standard error before new ones are dropped.
const BACKLOG: usize = 1_000;

/// The count of dropped lines, once logging is set up.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Sets up the process's logging. Keep the guard for as long as the process runs: dropping it
/// writes out what is waiting and stops the writer.
pub fn init() -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BACKLOG)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let _ = DROPPED.set(writer.error_counter());
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer)
        // Its own complaints would go to the same standard error, with `eprintln!`, which
        // panics when that is closed.
        .log_internal_errors(false)
        .init();
    guard
}

/// How many log lines were dropped so far.
pub(crate) fn dropped_lines() -> usize {
    DROPPED.get().map_or(0, ErrorCounter::dropped_lines)
}

//! Polling a condition until it holds, with the reason it did not hold in the error otherwise.

use std::{
    thread,
    time::{Duration, Instant},
};

use crate::Error;

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(50);

/// Why a check did not pass: not yet (worth another look), or never (stop waiting).
#[derive(Debug)]
pub(crate) enum NotYet {
    /// The condition does not hold yet, for this reason.
    Waiting(String),
    /// It cannot come to hold: a process died, say.
    Failed(Error),
}

/// A process that refuses connections or answers oddly may be starting or failing over: look
/// again later.
impl From<redis::RedisError> for NotYet {
    fn from(err: redis::RedisError) -> Self {
        Self::Waiting(err.to_string())
    }
}

impl From<Error> for NotYet {
    fn from(err: Error) -> Self {
        Self::Failed(err)
    }
}

/// Checks `check` until it passes or `timeout` has gone by.
pub(crate) fn until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, NotYet>,
) -> Result<T, Error> {
    let started = Instant::now();
    loop {
        let last = match check() {
            Ok(done) => return Ok(done),
            Err(NotYet::Failed(err)) => return Err(err),
            Err(NotYet::Waiting(reason)) => reason,
        };
        if started.elapsed() > timeout {
            return Err(Error::Timeout {
                what: what.to_owned(),
                waited: started.elapsed(),
                last,
            });
        }
        thread::sleep(POLL);
    }
}

/// Fails a check with `reason` unless `condition` holds.
pub(crate) fn ensure(condition: bool, reason: impl FnOnce() -> String) -> Result<(), NotYet> {
    if condition {
        Ok(())
    } else {
        Err(NotYet::Waiting(reason()))
    }
}

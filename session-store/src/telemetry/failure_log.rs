//! Log lines about failed requests that an outage cannot turn into a flood.
//!
//! When Redis goes away every request fails the same way, thousands a second. Each failure is
//! one line (what was answered, and the error with its causes, `: `-separated, from their
//! `Display`: never a `Debug`, which for actix-session's errors carries a backtrace of a
//! hundred lines when `RUST_BACKTRACE` is set), and of the failures with the same answer and
//! cause, at most one a second is written: the next one says how many were folded into it.

use std::{
    collections::HashMap,
    error::Error,
    fmt,
    sync::{LazyLock, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tracing::Level;

/// How often one cause may be logged.
const PER_CAUSE: Duration = Duration::from_secs(1);

/// How many causes are told apart at once; past that (a flood of errors that each read
/// differently), the others share one allowance.
const CAUSES: usize = 64;

/// An error and its sources on one line: `a: b: c`. A source whose text its error already
/// includes (many wrappers print their cause) is not repeated.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !written.contains(&text) {
                written.push_str(": ");
                written.push_str(&text);
            }
            source = cause.source();
        }
        f.write_str(&written)
    }
}

/// One cause's allowance: when its last line was written, and how many were folded since.
struct Allowance {
    logged: Instant,
    folded: u64,
}

/// The allowances of the causes seen lately.
#[derive(Default)]
struct Allowances(HashMap<String, Allowance>);

static ALLOWANCES: LazyLock<Mutex<Allowances>> = LazyLock::new(Mutex::default);

/// Logs `what` happened because of `cause` at `level`, unless a line of the same `what` and
/// `cause` was logged within the last second.
pub(crate) fn log(level: Level, what: &str, cause: &str) {
    let admitted = ALLOWANCES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .admit(&format!("{what}\0{cause}"), Instant::now());
    let Some(folded) = admitted else {
        return;
    };
    match level {
        Level::ERROR => tracing::error!(error = cause, folded, "{what}"),
        Level::WARN => tracing::warn!(error = cause, folded, "{what}"),
        _ => tracing::info!(error = cause, folded, "{what}"),
    }
}

impl Allowances {
    /// Whether a line about `cause` may be written at `now`, and if so how many lines about
    /// it were folded since the last.
    fn admit(&mut self, cause: &str, now: Instant) -> Option<u64> {
        let allowances = &mut self.0;
        if !allowances.contains_key(cause) && allowances.len() >= CAUSES {
            // Forgets the causes whose second is over and that owe no count.
            allowances.retain(|_, allowance| {
                allowance.folded > 0 || now.duration_since(allowance.logged) < PER_CAUSE
            });
        }
        let cause = if allowances.contains_key(cause) || allowances.len() < CAUSES {
            cause
        } else {
            "\0other causes"
        };
        let Some(allowance) = allowances.get_mut(cause) else {
            let first = Allowance {
                logged: now,
                folded: 0,
            };
            allowances.insert(cause.to_owned(), first);
            return Some(0);
        };
        if now.duration_since(allowance.logged) < PER_CAUSE {
            allowance.folded += 1;
            return None;
        }
        allowance.logged = now;
        Some(std::mem::take(&mut allowance.folded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_cause_per_second_with_the_count_of_the_folded() {
        let mut allowances = Allowances::default();
        let mut admit = |cause, at| allowances.admit(cause, at);
        let start = Instant::now();
        assert_eq!(admit("test: refused", start), Some(0));
        for _ in 0..1_000 {
            assert_eq!(
                admit("test: refused", start + Duration::from_millis(10)),
                None
            );
        }
        assert_eq!(
            admit("test: timed out", start + Duration::from_millis(10)),
            Some(0),
            "another cause has its own second"
        );
        assert_eq!(admit("test: refused", start + PER_CAUSE), Some(1_000));
        assert_eq!(admit("test: refused", start + PER_CAUSE * 2), Some(0));
    }

    #[test]
    fn a_flood_of_distinct_causes_shares_one_allowance_past_the_limit() {
        let mut allowances = Allowances::default();
        let start = Instant::now();
        let admitted = (0..CAUSES * 10)
            .filter(|n| allowances.admit(&format!("distinct {n}"), start).is_some())
            .count();
        assert!(admitted <= CAUSES + 1, "{admitted} lines in one second");
    }

    #[derive(Debug)]
    struct Wrapper(std::io::Error);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "could not connect: {}", self.0)
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_chain_names_each_cause_once() {
        let refused = std::io::Error::other("refused");
        assert_eq!(
            Chain(&Wrapper(refused)).to_string(),
            "could not connect: refused"
        );
        let err = crate::error::StoreError::Pool(deadpool::managed::PoolError::Closed);
        assert_eq!(
            Chain(&err).to_string(),
            "could not get a Redis connection from the pool: Pool has been closed"
        );
    }
}

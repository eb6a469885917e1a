//! Sessions whose expiry a `load` slid moments ago.
//!
//! With `TtlExtensionPolicy::OnEveryRequest`, actix-session calls `update_ttl` right after
//! `load` on a request that changed nothing. Our `load` already slid the expiry in its one
//! round trip, so `update_ttl` finds the session here and skips Redis. Two generations of a set,
//! one per `WINDOW`, bound the memory without ever scanning: an entry lives less than two
//! windows, and a generation holds at most `CAPACITY` entries (past that, `update_ttl` simply
//! pays its round trip).

use std::{
    collections::HashSet,
    mem,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

const WINDOW: Duration = Duration::from_secs(1);
const CAPACITY: usize = 65_536;

/// The Redis keys of recently loaded sessions.
#[derive(Debug)]
pub(crate) struct RecentTouches {
    generations: Mutex<Generations>,
}

#[derive(Debug)]
struct Generations {
    current: HashSet<String>,
    previous: HashSet<String>,
    started: Instant,
}

impl RecentTouches {
    pub(crate) fn new() -> Self {
        Self {
            generations: Mutex::new(Generations {
                current: HashSet::new(),
                previous: HashSet::new(),
                started: Instant::now(),
            }),
        }
    }

    /// Notes that `key`'s expiry was slid just now.
    pub(crate) fn record(&self, key: &str) {
        let mut generations = self.lock();
        if generations.current.len() < CAPACITY {
            generations.current.insert(key.to_owned());
        }
    }

    /// Forgets `key`, returning whether its expiry was slid less than two windows ago.
    pub(crate) fn take(&self, key: &str) -> bool {
        let mut generations = self.lock();
        generations.current.remove(key) || generations.previous.remove(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        let mut generations = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        generations.rotate(Instant::now());
        generations
    }
}

impl Generations {
    /// Generations cover fixed windows: `current` the one from `started`, `previous` the one
    /// before it.
    fn rotate(&mut self, now: Instant) {
        let age = now.duration_since(self.started);
        if age < WINDOW {
            return;
        }
        if age < 2 * WINDOW {
            self.previous = mem::take(&mut self.current);
            self.started += WINDOW;
        } else {
            self.previous.clear();
            self.current.clear();
            self.started = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_key_is_taken_once() {
        let recent = RecentTouches::new();
        recent.record("a");
        assert!(recent.take("a"));
        assert!(!recent.take("a"));
        assert!(!recent.take("b"));
    }

    #[test]
    fn entries_survive_one_rotation_and_not_two() {
        let start = Instant::now();
        let mut generations = Generations {
            current: HashSet::from(["a".to_owned(), "b".to_owned()]),
            previous: HashSet::new(),
            started: start,
        };
        generations.rotate(start + WINDOW + WINDOW / 2);
        assert!(generations.previous.contains("a"));
        generations.rotate(start + 2 * WINDOW);
        assert!(
            generations.previous.is_empty() && generations.current.is_empty(),
            "an entry outlived two windows"
        );

        generations.current.insert("c".to_owned());
        generations.rotate(start + 10 * WINDOW);
        assert!(
            generations.previous.is_empty(),
            "a stale generation must not survive a gap"
        );
    }
}

//! The near cache: sessions this instance read lately, kept in its memory and served with no
//! Redis command for as long as Redis has said nothing about them.
//!
//! Validity comes from Redis's client-side caching: the [link](link) tracks the prefix of the
//! session keys (`CLIENT TRACKING ON BCAST PREFIX`) on every server that holds sessions, and
//! each change of a session there (a write, a logout, a revocation, an expiry, a sliding of
//! its expiry) drops the copy from every instance that tracks it. Four rules keep a copy from
//! ever outliving what it copies:
//!
//! - A copy is served only while every tracking socket holds nothing unread and everything
//!   read from it was applied ([`watch`], one `poll` for all of them): Redis sends a change's
//!   invalidation before the change's answer, so no change whose answer is out can still be
//!   on its way.
//! - A read's answer goes in only if no invalidation of its key's slot and no change of the
//!   link came since the read was sent ([`Mark`]): an invalidation that overtook the answer
//!   cannot be undone by it.
//! - While the link is down, or has not answered its heartbeat for [`LINK_SILENCE`], nothing is
//!   served; when it goes down every copy is dropped, and copies of an earlier link are never
//!   served (the link's generation). It fails closed.
//! - Each copy is served only until its expiry is due to slide (see
//!   [`slide_granularity`](crate::RedisSessionStoreBuilder::slide_granularity)); the read
//!   then goes to Redis, which slides it and so drops every other instance's copy.

pub(crate) mod link;
mod watch;

use std::{
    sync::{
        Arc, Mutex, OnceLock, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use metrics::{Counter, Gauge, SharedString};
use quick_cache::{Weighter, sync::Cache};

use crate::session::fields::SessionState;

/// How long after the last heartbeat the link answered the copies stay servable: past it,
/// an invalidation may be stuck behind a slow link, so reads go to Redis.
pub(crate) const LINK_SILENCE: Duration = Duration::from_millis(400);

/// Slots of keys whose invalidations are counted apart.
const SLOTS: usize = 256;

/// The room one session of up to this many bytes takes; a larger one takes several rooms.
pub(crate) const ROOM_BYTES: u64 = 4 * 1024;

/// A session as Redis had it when this instance read it.
#[derive(Debug)]
pub(crate) struct Copy {
    pub(crate) state: Arc<SessionState>,
    /// Its creation time, milliseconds since the epoch.
    pub(crate) created: u64,
    /// The entries stored in the other form than the store writes now.
    pub(crate) rewrite: Vec<String>,
    /// When its expiry is due to slide: from then on, reads go to Redis.
    slide_at: Instant,
    /// The link generation it was read under.
    generation: u64,
}

/// What a lookup found: a copy to serve, or the mark a read from Redis must carry for its
/// answer to go in.
pub(crate) enum Lookup {
    Hit(Arc<Copy>),
    Miss(Mark),
}

/// The state of the cache when a read was sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    /// The count of changes of the read's key's slot.
    changes: u64,
    generation: u64,
    sent: Instant,
}

/// Weighs a copy in rooms of [`ROOM_BYTES`]: the cache holds at most as many sessions as it
/// has rooms, and at most that many rooms' bytes.
#[derive(Debug, Clone, Copy)]
struct Rooms;

impl Weighter<String, Arc<Copy>> for Rooms {
    fn weight(&self, key: &String, copy: &Arc<Copy>) -> u64 {
        let bytes = key.len()
            + copy
                .state
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>();
        (bytes as u64).div_ceil(ROOM_BYTES).max(1)
    }
}

/// The cache and what says whether its copies may be served; shared with the link.
pub(crate) struct NearCache {
    copies: Cache<String, Arc<Copy>, Rooms>,
    /// Counts of invalidations, one per slot of keys (by hash), each bumped under `changing`:
    /// a read's answer goes in only if its key's count did not move meanwhile. Slots keep
    /// the invalidations of other sessions from keeping most answers out under many writes.
    changes: [AtomicU64; SLOTS],
    changing: Mutex<()>,
    /// The link's generation: odd while it is up and tracking, even while it is not.
    generation: AtomicU64,
    /// How many links were begun: each gets a generation of its own.
    attempts: AtomicU64,
    /// Milliseconds after `origin` at which the last heartbeat that the link answered was
    /// sent: every change Redis made before then has reached the cache.
    heard_at: AtomicU64,
    origin: Instant,
    /// The sockets of the link that is up: a copy is served only while each has nothing
    /// unapplied (see [`watch::Watch`]).
    watches: RwLock<Vec<Arc<watch::Watch>>>,
    metrics: NearMetrics,
}

impl std::fmt::Debug for NearCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("sessions", &self.copies.len())
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl NearCache {
    /// A cache of at most `max_sessions` sessions (and as many rooms of [`ROOM_BYTES`]),
    /// whose link is down until it says otherwise.
    pub(crate) fn new(max_sessions: usize, store: &str) -> Self {
        let rooms = max_sessions.max(1) as u64;
        Self {
            copies: Cache::with_weighter(max_sessions.max(1), rooms, Rooms),
            changes: std::array::from_fn(|_| AtomicU64::new(0)),
            changing: Mutex::new(()),
            generation: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            heard_at: AtomicU64::new(0),
            origin: Instant::now(),
            watches: RwLock::default(),
            metrics: NearMetrics::new(store),
        }
    }

    /// The copy of the session at `key`, if one may be served now; otherwise the mark for a
    /// read from Redis.
    pub(crate) fn lookup(&self, key: &str) -> Lookup {
        let now = Instant::now();
        let generation = self.generation.load(Ordering::Acquire);
        let mark = Mark {
            changes: self.changes_of(key).load(Ordering::Acquire),
            generation,
            sent: now,
        };
        if generation % 2 == 1
            && self.heard_lately(now)
            && self.link_is_quiet()
            && let Some(copy) = self.copies.get(key)
            && copy.generation == generation
            && now < copy.slide_at
        {
            self.metrics.hit();
            return Lookup::Hit(copy);
        }
        self.metrics.miss();
        Lookup::Miss(mark)
    }

    /// Whether every invalidation Redis sent so far has been applied.
    fn link_is_quiet(&self) -> bool {
        watch::all_quiet(&self.watches.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn heard_lately(&self, now: Instant) -> bool {
        let heard = Duration::from_millis(self.heard_at.load(Ordering::Acquire));
        now.duration_since(self.origin) <= heard + LINK_SILENCE
    }

    /// Keeps what a read marked `mark` found, unless anything changed since it was sent.
    /// `left` is the time the session had to live in Redis after the read; its expiry is due
    /// to slide once less than `slide_after` is left.
    pub(crate) fn keep(
        &self,
        key: &str,
        mark: Mark,
        (state, created, rewrite): (Arc<SessionState>, u64, &[String]),
        left: Duration,
        slide_after: Duration,
    ) {
        let Some(servable) = left.checked_sub(slide_after) else {
            return;
        };
        let copy = Arc::new(Copy {
            state,
            created,
            rewrite: rewrite.to_vec(),
            slide_at: mark.sent + servable,
            generation: mark.generation,
        });
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        if mark.generation % 2 == 1
            && self.generation.load(Ordering::Acquire) == mark.generation
            && self.changes_of(key).load(Ordering::Acquire) == mark.changes
        {
            self.copies.insert(key.to_owned(), copy);
        }
    }

    /// Drops the copies of `keys` (Redis changed them, or this instance is about to): and
    /// no read in flight puts one back.
    pub(crate) fn forget<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            if let Ok(key) = std::str::from_utf8(key) {
                self.changes_of(key).fetch_add(1, Ordering::AcqRel);
                self.copies.remove(key);
            }
        }
    }

    /// The count of changes of `key`'s slot. A session key ends in a digest (SHA-256, in
    /// base64), so its last two characters spread keys evenly with no hashing.
    fn changes_of(&self, key: &str) -> &AtomicU64 {
        let slot = key
            .bytes()
            .rev()
            .take(2)
            .fold(0, |slot, byte| slot * 64 + usize::from(byte));
        &self.changes[slot % SLOTS]
    }

    /// Drops every copy (Redis flushed its keys).
    pub(crate) fn forget_all(&self) {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        for changes in &self.changes {
            changes.fetch_add(1, Ordering::AcqRel);
        }
        self.copies.clear();
    }

    /// Counts `keys` invalidations Redis sent.
    pub(crate) fn invalidated(&self, keys: usize) {
        self.metrics.invalidations(keys);
    }

    /// The generation of a new link, which it will have once its connections are all up:
    /// odd, and never one an earlier link had.
    pub(crate) fn next_generation(&self) -> u64 {
        2 * self.attempts.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The link of `generation` is up and tracking on every server (whose sockets `watches`
    /// watch): copies may be served from now on, unless `all_alive` says a connection of it
    /// died meanwhile.
    pub(crate) fn link_up(
        &self,
        generation: u64,
        watches: Vec<Arc<watch::Watch>>,
        all_alive: impl FnOnce() -> bool,
    ) -> bool {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        if !all_alive() {
            return false;
        }
        *self.watches.write().unwrap_or_else(PoisonError::into_inner) = watches;
        self.heard(Instant::now());
        self.generation.store(generation, Ordering::Release);
        self.metrics.link(true);
        true
    }

    /// The link of `generation` is down: nothing is served until a new one is up, and every
    /// copy goes. Does nothing when that link was already replaced.
    pub(crate) fn link_down(&self, generation: u64) {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        self.generation.store(generation + 1, Ordering::Release);
        self.watches
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.copies.clear();
        self.metrics.link(false);
    }

    /// Whether the link of `generation` is the one up now.
    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation
    }

    /// Every server answered a heartbeat sent at `sent`.
    pub(crate) fn heard(&self, sent: Instant) {
        let at = u64::try_from(sent.duration_since(self.origin).as_millis()).unwrap_or(u64::MAX);
        self.heard_at.fetch_max(at, Ordering::AcqRel);
    }

    /// How many sessions it holds now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.copies.len()
    }
}

/// The near cache's metrics, registered on first use:
/// `session_store_near_cache_reads_total{store, result="hit|miss"}`,
/// `session_store_near_cache_invalidations_total{store}`,
/// `session_store_near_cache_fail_closed_total{store}` (periods with the link down) and
/// `session_store_near_cache_link_up{store}` (1 or 0).
struct NearMetrics {
    store: SharedString,
    hits: OnceLock<Counter>,
    misses: OnceLock<Counter>,
    invalidations: OnceLock<Counter>,
    fail_closed: OnceLock<Counter>,
    link_up: OnceLock<Gauge>,
}

impl NearMetrics {
    fn new(store: &str) -> Self {
        Self {
            store: SharedString::from(store.to_owned()),
            hits: OnceLock::new(),
            misses: OnceLock::new(),
            invalidations: OnceLock::new(),
            fail_closed: OnceLock::new(),
            link_up: OnceLock::new(),
        }
    }

    fn hit(&self) {
        self.hits.get_or_init(|| self.reads("hit")).increment(1);
    }

    fn miss(&self) {
        self.misses.get_or_init(|| self.reads("miss")).increment(1);
    }

    fn reads(&self, result: &'static str) -> Counter {
        metrics::counter!(
            "session_store_near_cache_reads_total",
            "store" => self.store.clone(),
            "result" => result,
        )
    }

    fn invalidations(&self, keys: usize) {
        self.invalidations
            .get_or_init(|| {
                metrics::counter!("session_store_near_cache_invalidations_total", "store" => self.store.clone())
            })
            .increment(keys as u64);
    }

    fn link(&self, up: bool) {
        self.link_up
            .get_or_init(|| {
                metrics::gauge!("session_store_near_cache_link_up", "store" => self.store.clone())
            })
            .set(if up { 1.0 } else { 0.0 });
        if !up {
            self.fail_closed
                .get_or_init(|| {
                    metrics::counter!("session_store_near_cache_fail_closed_total", "store" => self.store.clone())
                })
                .increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLIDE_AFTER: Duration = Duration::from_secs(60);
    const LEFT: Duration = Duration::from_secs(70);

    fn state(value: &str) -> SessionState {
        SessionState::from([("user".to_owned(), value.to_owned())])
    }

    fn up(cache: &NearCache) -> u64 {
        let generation = cache.next_generation();
        assert!(cache.link_up(generation, Vec::new(), || true));
        generation
    }

    fn miss(cache: &NearCache, key: &str) -> Mark {
        match cache.lookup(key) {
            Lookup::Miss(mark) => mark,
            Lookup::Hit(_) => panic!("{key} was served from the cache"),
        }
    }

    fn keep(cache: &NearCache, key: &str, mark: Mark, value: &str) {
        cache.keep(
            key,
            mark,
            (Arc::new(state(value)), 1, &[]),
            LEFT,
            SLIDE_AFTER,
        );
    }

    fn served(cache: &NearCache, key: &str) -> Option<String> {
        match cache.lookup(key) {
            Lookup::Hit(copy) => Some(copy.state["user"].clone()),
            Lookup::Miss(_) => None,
        }
    }

    #[test]
    fn a_read_is_served_until_something_changes() {
        let cache = NearCache::new(10, "test");
        up(&cache);
        let mark = miss(&cache, "a");
        keep(&cache, "a", mark, "alice");
        assert_eq!(served(&cache, "a").as_deref(), Some("alice"));
        cache.forget([b"a".as_slice()]);
        assert_eq!(served(&cache, "a"), None);
    }

    #[test]
    fn an_invalidation_that_overtook_the_answer_keeps_it_out() {
        let cache = NearCache::new(10, "test");
        up(&cache);
        let mark = miss(&cache, "a");
        cache.forget([b"a".as_slice()]);
        keep(&cache, "a", mark, "alice");
        assert_eq!(served(&cache, "a"), None);
    }

    #[test]
    fn nothing_is_served_while_the_link_is_down_nor_after_from_before() {
        let cache = NearCache::new(10, "test");
        let mark = miss(&cache, "a");
        keep(&cache, "a", mark, "alice");
        assert_eq!(served(&cache, "a"), None, "never up");
        let generation = up(&cache);
        let mark = miss(&cache, "a");
        keep(&cache, "a", mark, "alice");
        cache.link_down(generation);
        assert_eq!(served(&cache, "a"), None, "down");
        assert_eq!(cache.len(), 0, "down drops every copy");
        let in_flight = miss(&cache, "b");
        up(&cache);
        keep(&cache, "b", in_flight, "bob");
        assert_eq!(served(&cache, "b"), None, "read while down");
    }

    #[test]
    fn a_link_that_died_while_coming_up_stays_down() {
        let cache = NearCache::new(10, "test");
        let generation = cache.next_generation();
        assert!(!cache.link_up(generation, Vec::new(), || false));
        assert!(!cache.is_current(generation));
    }

    #[test]
    fn a_silent_link_serves_nothing() {
        let cache = NearCache::new(10, "test");
        up(&cache);
        let mark = miss(&cache, "a");
        keep(&cache, "a", mark, "alice");
        cache.heard_at.store(0, Ordering::Release);
        std::thread::sleep(LINK_SILENCE + Duration::from_millis(50));
        assert_eq!(served(&cache, "a"), None);
        cache.heard(Instant::now());
        assert_eq!(served(&cache, "a").as_deref(), Some("alice"));
    }

    #[test]
    fn a_copy_is_served_only_until_its_expiry_is_due_to_slide() {
        let cache = NearCache::new(10, "test");
        up(&cache);
        let mark = miss(&cache, "a");
        cache.keep(
            "a",
            mark,
            (Arc::new(state("alice")), 1, &[]),
            SLIDE_AFTER + Duration::from_millis(30),
            SLIDE_AFTER,
        );
        assert!(served(&cache, "a").is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(served(&cache, "a"), None);
        let mark = miss(&cache, "b");
        cache.keep(
            "b",
            mark,
            (Arc::new(state("bob")), 1, &[]),
            SLIDE_AFTER,
            SLIDE_AFTER,
        );
        assert_eq!(served(&cache, "b"), None, "due already");
    }

    #[test]
    fn it_holds_at_most_its_sessions_and_their_rooms() {
        let cache = NearCache::new(8, "test");
        up(&cache);
        for n in 0..100 {
            let key = format!("k{n}");
            let mark = miss(&cache, &key);
            keep(&cache, &key, mark, "alice");
        }
        assert!(cache.len() <= 8, "{} sessions", cache.len());
        let big = "x".repeat(3 * ROOM_BYTES as usize);
        for n in 0..10 {
            let key = format!("big{n}");
            let mark = miss(&cache, &key);
            keep(&cache, &key, mark, &big);
        }
        assert!(
            cache.copies.weight() <= 8,
            "{} rooms",
            cache.copies.weight()
        );
    }
}

//! Entry values that Redis alone cannot read: each sealed with AES-256-GCM under a key derived
//! from the session id, which only the session's cookie carries.
//!
//! Redis holds the id's SHA-256 digest, never the id, and the key comes from the id through
//! HKDF-SHA256: so neither a Redis dump nor the application's configuration opens a value; the
//! request carrying the cookie does. The associated data (the digest, then the entry's name)
//! binds each value to its session and its entry: moved anywhere else it fails to open.
//!
//! A sealed value is `\0`, a format byte, a random 96-bit nonce, the ciphertext and the 128-bit
//! tag. A clear value is the entry's JSON text, which never starts with a NUL; it is read as it
//! is (a session written before sealing, or with sealing off) and sealed by the next write of
//! the session.
//!
//! Opening costs a key derivation per session and an AES-GCM pass per value, about a tenth of
//! a read's CPU. Most reads find what the last one found, so each instance keeps, per session,
//! the sealed bytes it opened and the values they opened to ([`OpenedValues`]): bytes that are
//! the same again are the same value, and nothing is opened. The bytes are compared whole
//! (nonce and tag included), under the session's digest and the entry's name, so a value moved
//! or changed in Redis never matches and is opened, and fails, as without the memo.

use std::{
    borrow::Cow,
    cell::{OnceCell, RefCell},
    collections::HashMap,
    sync::{Arc, LazyLock},
};

use aes_gcm::{
    Aes256Gcm, KeyInit as _,
    aead::{AeadInOut as _, Nonce, Tag, inout::InOutBuf},
};
use hkdf::HkdfExtract;
use quick_cache::{Weighter, sync::Cache};
use sha2::Sha256;

use crate::{
    config::Config,
    session::{fields::SessionState, key::RedisKey},
};

/// The first byte of a sealed value; no JSON text starts with it.
const SEALED: u8 = 0;
/// The format of sealed values this store writes (and the only one it opens).
const FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// What sealing adds to a value: the two leading bytes, the nonce and the tag.
const OVERHEAD: usize = 2 + NONCE_LEN + TAG_LEN;
/// HKDF's salt and info: a session's entry key serves this and nothing else.
const SALT: &[u8] = b"session-store entries";
const INFO: &[u8] = b"aes-256-gcm, format 1";

/// Whether the store writes entry `name` sealed: every entry unless sealing is off, but the
/// user entry and the exposed entries, which the store reads without a cookie (the index,
/// revocation, the sessions list).
fn seals(config: &Config, name: &str) -> bool {
    config.seal_entries && !config.reads_without_cookie(name)
}

/// A value the store keeps in clear, as text: `None` for one that is sealed (an entry that
/// became the user entry or an exposed one after it was written; its session's next write
/// puts it in clear) or is not text.
pub(crate) fn clear_text(stored: Vec<u8>) -> Option<String> {
    if stored.first() == Some(&SEALED) {
        return None;
    }
    String::from_utf8(stored).ok()
}

/// How many bytes `state` takes in Redis, entry names plus values as stored: what the size
/// limit counts.
pub(crate) fn stored_size(config: &Config, state: &SessionState) -> usize {
    state
        .iter()
        .map(|(name, value)| {
            name.len() + value.len() + if seals(config, name) { OVERHEAD } else { 0 }
        })
        .sum()
}

/// How many bytes of opened values an instance keeps: about 5,000 sessions of 3 KiB.
const OPENED_BYTES: u64 = 16 << 20;

/// The values this instance opened lately, by session digest, least recently used out first.
pub(crate) struct OpenedValues(Cache<String, Arc<Memo>, ByWeight>);

/// Sealed bytes, and the value they opened to.
type Recalled = (Box<[u8]>, String);

/// One session's opened values, by entry name.
struct Memo {
    values: HashMap<String, Recalled>,
    /// Its bytes, roughly: what the cache weighs it by.
    weight: u64,
}

/// Weighs a session's memo by its bytes.
#[derive(Clone)]
struct ByWeight;

impl Weighter<String, Arc<Memo>> for ByWeight {
    fn weight(&self, digest: &String, memo: &Arc<Memo>) -> u64 {
        digest.len() as u64 + memo.weight
    }
}

impl OpenedValues {
    pub(crate) fn new() -> Self {
        Self::with_bytes(OPENED_BYTES)
    }

    fn with_bytes(bytes: u64) -> Self {
        Self(Cache::with_weighter(5_000, bytes, ByWeight))
    }

    /// Forgets the values of the session at `key` (it ended).
    pub(crate) fn forget(&self, key: &RedisKey) {
        self.0.remove(key.digest());
    }
}

impl std::fmt::Debug for OpenedValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedValues")
            .field("sessions", &self.0.len())
            .finish()
    }
}

/// The sealing of one session's entries: which ones are sealed, and the key, derived on first
/// use (a request whose entries are all in clear, or all as this instance last opened them,
/// derives none).
pub(crate) struct Seal<'a> {
    config: &'a Config,
    opened: &'a OpenedValues,
    id: &'a str,
    key: &'a RedisKey,
    cipher: OnceCell<Aes256Gcm>,
    associated_data: RefCell<Vec<u8>>,
    /// What this instance opened of the session before, looked up on the first sealed value.
    memo: OnceCell<Option<Arc<Memo>>>,
    /// What this request opened that the memo did not hold: name, sealed bytes, value.
    learned: RefCell<Vec<(String, Recalled)>>,
}

/// A stored value as read: the entry's JSON text, and whether it is stored in the other form
/// than the store writes it now (in clear though the store seals it, or the other way round),
/// so that the next write of the session writes it again.
pub(crate) struct Opened {
    pub(crate) value: String,
    pub(crate) rewrite: bool,
}

impl<'a> Seal<'a> {
    /// The sealing of the session with id `id`, stored at `key`, with the values this
    /// instance opened lately.
    pub(crate) fn new(
        config: &'a Config,
        opened: &'a OpenedValues,
        id: &'a str,
        key: &'a RedisKey,
    ) -> Self {
        Self {
            config,
            opened,
            id,
            key,
            cipher: OnceCell::new(),
            associated_data: RefCell::new(Vec::new()),
            memo: OnceCell::new(),
            learned: RefCell::new(Vec::new()),
        }
    }

    /// The key of the session whose entries this seals.
    pub(crate) fn key(&self) -> &RedisKey {
        self.key
    }

    fn seals(&self, name: &str) -> bool {
        seals(self.config, name)
    }

    /// The bytes to store for entry `name` holding `value`.
    pub(crate) fn store<'v>(&self, name: &str, value: &'v str) -> Cow<'v, [u8]> {
        if !self.seals(name) {
            return Cow::Borrowed(value.as_bytes());
        }
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut sealed = Vec::with_capacity(value.len() + OVERHEAD);
        sealed.extend_from_slice(&[SEALED, FORMAT]);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(value.as_bytes());
        let body = &mut sealed[2 + NONCE_LEN..];
        let tag = self
            .cipher()
            .encrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(nonce),
                &self.associated_data(name),
                body.into(),
            )
            .expect("a session's entry is far below AES-GCM's message limit");
        sealed.extend_from_slice(&tag);
        Cow::Owned(sealed)
    }

    /// The value of entry `name` from its stored bytes, or `None` when they do not open
    /// (tampered with, moved from another session or entry, another format) or are not text.
    pub(crate) fn open(&self, name: &str, mut stored: Vec<u8>) -> Option<Opened> {
        if stored.first() != Some(&SEALED) {
            let rewrite = self.seals(name);
            return String::from_utf8(stored)
                .ok()
                .map(|value| Opened { value, rewrite });
        }
        let rewrite = !self.seals(name);
        if let Some(value) = self.recall(name, &stored) {
            return Some(Opened { value, rewrite });
        }
        if stored.len() < OVERHEAD || stored[1] != FORMAT {
            return None;
        }
        let sealed = stored.clone().into_boxed_slice();
        let tag_at = stored.len() - TAG_LEN;
        let tag = Tag::<Aes256Gcm>::try_from(&stored[tag_at..]).ok()?;
        let nonce = Nonce::<Aes256Gcm>::try_from(&stored[2..2 + NONCE_LEN]).ok()?;
        stored.truncate(tag_at);
        let body = InOutBuf::from(&mut stored[2 + NONCE_LEN..]);
        self.cipher()
            .decrypt_inout_detached(&nonce, &self.associated_data(name), body, &tag)
            .ok()?;
        stored.drain(..2 + NONCE_LEN);
        let value = String::from_utf8(stored).ok()?;
        self.learned
            .borrow_mut()
            .push((name.to_owned(), (sealed, value.clone())));
        Some(Opened { value, rewrite })
    }

    /// The value that `stored` opened to when this instance last read entry `name`, if it
    /// opened exactly these bytes.
    fn recall(&self, name: &str, stored: &[u8]) -> Option<String> {
        let memo = self
            .memo
            .get_or_init(|| self.opened.0.get(self.key.digest()));
        let (sealed, value) = memo.as_ref()?.values.get(name)?;
        (**sealed == *stored).then(|| value.clone())
    }

    /// Keeps what this read opened, for the next read of the session: its memo becomes the
    /// sealed entries of `state`, the read's whole state.
    pub(crate) fn remember(&self, state: &SessionState) {
        let learned = self.learned.take();
        if learned.is_empty() {
            return;
        }
        let mut values = match self.memo.get() {
            Some(Some(memo)) => memo.values.clone(),
            _ => HashMap::with_capacity(learned.len()),
        };
        values.retain(|name, _| state.contains_key(name));
        values.extend(learned);
        // Each entry's bytes, and about 64 more for the map's slot and the three allocations.
        let weight = values
            .iter()
            .map(|(name, (sealed, value))| (name.len() + sealed.len() + value.len() + 64) as u64)
            .sum();
        let memo = Arc::new(Memo { values, weight });
        self.opened.0.insert(self.key.digest().to_owned(), memo);
    }

    /// The digest of the id, a NUL, the entry's name: built in one buffer per session, which
    /// keeps the digest.
    fn associated_data(&self, name: &str) -> std::cell::RefMut<'_, Vec<u8>> {
        let mut data = self.associated_data.borrow_mut();
        let digest = self.key.digest();
        if data.is_empty() {
            data.extend_from_slice(digest.as_bytes());
            data.push(0);
        }
        data.truncate(digest.len() + 1);
        data.extend_from_slice(name.as_bytes());
        data
    }

    fn cipher(&self) -> &Aes256Gcm {
        self.cipher.get_or_init(|| {
            // HKDF's extract keyed by the salt once per process: a third less hashing per
            // session.
            static SALTED: LazyLock<HkdfExtract<Sha256>> =
                LazyLock::new(|| HkdfExtract::new(Some(SALT)));
            let mut extract = SALTED.clone();
            extract.input_ikm(self.id.as_bytes());
            let (_, hkdf) = extract.finalize();
            let mut key = [0u8; 32];
            hkdf.expand(INFO, &mut key)
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            Aes256Gcm::new(&key.into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::session_id;

    /// A fresh id and its key.
    fn session() -> (String, RedisKey) {
        let id = session_id::generate();
        let key = RedisKey::for_id("t:", &id);
        (id, key)
    }

    fn config() -> Config {
        Config {
            user_entry: Some("user".to_owned()),
            exposed_entries: vec!["agent".to_owned()],
            ..Config::default()
        }
    }

    #[test]
    fn a_sealed_value_opens_with_its_session_and_entry_only() {
        let memo = OpenedValues::new();
        let config = config();
        let (id, other_id) = (session_id::generate(), session_id::generate());
        let (key, other_key) = (
            RedisKey::for_id("t:", &id),
            RedisKey::for_id("t:", &other_id),
        );
        let seal = Seal::new(&config, &memo, &id, &key);
        let stored = seal.store("cart", "\"secret\"").into_owned();
        assert!(!stored.windows(6).any(|window| window == b"secret"));
        assert_eq!(stored.len(), "\"secret\"".len() + OVERHEAD);
        let opened = seal.open("cart", stored.clone()).expect("opens");
        assert_eq!(
            (opened.value.as_str(), opened.rewrite),
            ("\"secret\"", false)
        );
        assert!(seal.open("csrf", stored.clone()).is_none(), "another entry");
        let other = Seal::new(&config, &memo, &other_id, &other_key);
        assert!(
            other.open("cart", stored.clone()).is_none(),
            "another session"
        );
        let same_id_other_digest = Seal::new(&config, &memo, &id, &other_key);
        assert!(same_id_other_digest.open("cart", stored.clone()).is_none());
        for at in [1, 2, 10, stored.len() - 1] {
            let mut tampered = stored.clone();
            tampered[at] ^= 1;
            assert!(seal.open("cart", tampered).is_none(), "byte {at} flipped");
        }
        assert!(seal.open("cart", stored[..OVERHEAD - 1].to_vec()).is_none());
    }

    #[test]
    fn bytes_opened_before_are_recalled_and_any_other_bytes_are_opened() {
        let memo = OpenedValues::new();
        let config = config();
        let (id, key) = session();
        let first = Seal::new(&config, &memo, &id, &key);
        let stored = first.store("cart", "[1]").into_owned();
        assert!(first.open("cart", stored.clone()).is_some());
        first.remember(&SessionState::from([("cart".to_owned(), "[1]".to_owned())]));
        // A seal that could open nothing (not the session's id) recalls these very bytes...
        let blind = Seal::new(&config, &memo, "not the id", &key);
        let recalled = blind.open("cart", stored.clone()).expect("recalled");
        assert_eq!(recalled.value, "[1]");
        assert!(
            blind.cipher.get().is_none(),
            "nothing derived, nothing opened"
        );
        // ...and opens, so refuses, any other bytes, or these under another entry.
        let mut changed = stored.clone();
        changed[20] ^= 1;
        assert!(blind.open("cart", changed).is_none());
        assert!(blind.open("wish", stored.clone()).is_none());
        // An ended session's values are forgotten.
        memo.forget(&key);
        let blind = Seal::new(&config, &memo, "not the id", &key);
        assert!(blind.open("cart", stored).is_none());
    }

    #[test]
    fn the_memo_keeps_within_its_bytes_whatever_the_sessions_hold() {
        // A memo of 256 KiB (the store's has 16 MiB) and 100 sessions of one 8 KiB value
        // each: three times its room.
        let room = 256 << 10;
        let memo = OpenedValues::with_bytes(room);
        let config = config();
        let value = "x".repeat(8 << 10);
        let state = SessionState::from([("blob".to_owned(), value.clone())]);
        for _ in 0..100 {
            let (id, key) = session();
            let seal = Seal::new(&config, &memo, &id, &key);
            let stored = seal.store("blob", &value).into_owned();
            assert_eq!(seal.open("blob", stored).expect("opens").value, value);
            seal.remember(&state);
            assert!(memo.0.weight() <= room, "{}", memo.0.weight());
        }
        assert!(memo.0.len() < 100, "nothing was let go");
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let memo = OpenedValues::new();
        let config = config();
        let (id, key) = session();
        let seal = Seal::new(&config, &memo, &id, &key);
        assert_ne!(seal.store("cart", "1"), seal.store("cart", "1"));
    }

    #[test]
    fn what_the_store_reads_without_a_cookie_stays_in_clear() {
        let memo = OpenedValues::new();
        let config = config();
        let (id, key) = session();
        let seal = Seal::new(&config, &memo, &id, &key);
        for name in ["user", "agent"] {
            assert_eq!(seal.store(name, "\"alice\"").as_ref(), b"\"alice\"");
            let opened = seal.open(name, b"\"alice\"".to_vec()).expect("clear");
            assert!(!opened.rewrite);
        }
        let opened = seal.open("cart", b"[1]".to_vec()).expect("clear");
        assert_eq!((opened.value.as_str(), opened.rewrite), ("[1]", true));
        assert!(seal.open("cart", vec![0xff]).is_none(), "not text");
    }

    #[test]
    fn with_sealing_off_values_are_written_in_clear_and_sealed_ones_still_open() {
        let memo = OpenedValues::new();
        let on = config();
        let off = Config {
            seal_entries: false,
            ..config()
        };
        let (id, key) = session();
        let sealed = Seal::new(&on, &memo, &id, &key)
            .store("cart", "[1]")
            .into_owned();
        let seal = Seal::new(&off, &memo, &id, &key);
        assert_eq!(seal.store("cart", "[1]").as_ref(), b"[1]");
        let opened = seal.open("cart", sealed).expect("opens");
        assert_eq!(
            (opened.value.as_str(), opened.rewrite),
            ("[1]", true),
            "written in clear by the next write"
        );
        assert!(!seal.open("cart", b"[1]".to_vec()).expect("clear").rewrite);
    }

    #[test]
    fn the_size_limit_counts_the_sealing() {
        let config = config();
        let state = SessionState::from([
            ("user".to_owned(), "ab".to_owned()),
            ("cart".to_owned(), "abc".to_owned()),
        ]);
        assert_eq!(stored_size(&config, &state), 6 + 7 + OVERHEAD);
        let off = Config {
            seal_entries: false,
            ..config
        };
        assert_eq!(stored_size(&off, &state), 13);
    }
}

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

use std::{borrow::Cow, cell::OnceCell};

use aes_gcm::{
    Aes256Gcm, KeyInit as _,
    aead::{AeadInOut as _, Nonce, Tag, inout::InOutBuf},
};
use hkdf::Hkdf;
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

/// The sealing of one session's entries: which ones are sealed, and the key, derived on first
/// use (a request whose entries are all in clear derives none).
pub(crate) struct Seal<'a> {
    config: &'a Config,
    id: &'a str,
    key: &'a RedisKey,
    cipher: OnceCell<Aes256Gcm>,
}

/// A stored value as read: the entry's JSON text, and whether it was stored in clear though
/// the store seals it (so the next write seals it).
pub(crate) struct Opened {
    pub(crate) value: String,
    pub(crate) unsealed: bool,
}

impl<'a> Seal<'a> {
    /// The sealing of the session with id `id`, stored at `key`.
    pub(crate) fn new(config: &'a Config, id: &'a str, key: &'a RedisKey) -> Self {
        Self {
            config,
            id,
            key,
            cipher: OnceCell::new(),
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
            let unsealed = self.seals(name);
            return String::from_utf8(stored)
                .ok()
                .map(|value| Opened { value, unsealed });
        }
        if stored.len() < OVERHEAD || stored[1] != FORMAT {
            return None;
        }
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
        Some(Opened {
            value,
            unsealed: false,
        })
    }

    /// The digest of the id, a NUL, the entry's name.
    fn associated_data(&self, name: &str) -> Vec<u8> {
        let digest = self.key.digest();
        let mut data = Vec::with_capacity(digest.len() + 1 + name.len());
        data.extend_from_slice(digest.as_bytes());
        data.push(0);
        data.extend_from_slice(name.as_bytes());
        data
    }

    fn cipher(&self) -> &Aes256Gcm {
        self.cipher.get_or_init(|| {
            let mut key = [0u8; 32];
            Hkdf::<Sha256>::new(Some(SALT), self.id.as_bytes())
                .expand(INFO, &mut key)
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            Aes256Gcm::new(&key.into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::session_id;

    fn config() -> Config {
        Config {
            user_entry: Some("user".to_owned()),
            exposed_entries: vec!["agent".to_owned()],
            ..Config::default()
        }
    }

    #[test]
    fn a_sealed_value_opens_with_its_session_and_entry_only() {
        let config = config();
        let (id, other_id) = (session_id::generate(), session_id::generate());
        let (key, other_key) = (
            RedisKey::for_id("t:", &id),
            RedisKey::for_id("t:", &other_id),
        );
        let seal = Seal::new(&config, &id, &key);
        let stored = seal.store("cart", "\"secret\"").into_owned();
        assert!(!stored.windows(6).any(|window| window == b"secret"));
        assert_eq!(stored.len(), "\"secret\"".len() + OVERHEAD);
        let opened = seal.open("cart", stored.clone()).expect("opens");
        assert_eq!(
            (opened.value.as_str(), opened.unsealed),
            ("\"secret\"", false)
        );
        assert!(seal.open("csrf", stored.clone()).is_none(), "another entry");
        let other = Seal::new(&config, &other_id, &other_key);
        assert!(
            other.open("cart", stored.clone()).is_none(),
            "another session"
        );
        let same_id_other_digest = Seal::new(&config, &id, &other_key);
        assert!(same_id_other_digest.open("cart", stored.clone()).is_none());
        for at in [1, 2, 10, stored.len() - 1] {
            let mut tampered = stored.clone();
            tampered[at] ^= 1;
            assert!(seal.open("cart", tampered).is_none(), "byte {at} flipped");
        }
        assert!(seal.open("cart", stored[..OVERHEAD - 1].to_vec()).is_none());
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let config = config();
        let id = session_id::generate();
        let key = RedisKey::for_id("t:", &id);
        let seal = Seal::new(&config, &id, &key);
        assert_ne!(seal.store("cart", "1"), seal.store("cart", "1"));
    }

    #[test]
    fn what_the_store_reads_without_a_cookie_stays_in_clear() {
        let config = config();
        let id = session_id::generate();
        let key = RedisKey::for_id("t:", &id);
        let seal = Seal::new(&config, &id, &key);
        for name in ["user", "agent"] {
            assert_eq!(seal.store(name, "\"alice\"").as_ref(), b"\"alice\"");
            let opened = seal.open(name, b"\"alice\"".to_vec()).expect("clear");
            assert!(!opened.unsealed);
        }
        let opened = seal.open("cart", b"[1]".to_vec()).expect("clear");
        assert_eq!((opened.value.as_str(), opened.unsealed), ("[1]", true));
        assert!(seal.open("cart", vec![0xff]).is_none(), "not text");
    }

    #[test]
    fn with_sealing_off_values_are_written_in_clear_and_sealed_ones_still_open() {
        let on = config();
        let off = Config {
            seal_entries: false,
            ..config()
        };
        let id = session_id::generate();
        let key = RedisKey::for_id("t:", &id);
        let sealed = Seal::new(&on, &id, &key).store("cart", "[1]").into_owned();
        let seal = Seal::new(&off, &id, &key);
        assert_eq!(seal.store("cart", "[1]").as_ref(), b"[1]");
        let opened = seal.open("cart", sealed).expect("opens");
        assert_eq!((opened.value.as_str(), opened.unsealed), ("[1]", false));
        assert!(!seal.open("cart", b"[1]".to_vec()).expect("clear").unsealed);
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

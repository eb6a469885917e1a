//! The Redis key of a session: the only form in which a session id travels past the store's
//! front door.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use redis::{RedisWrite, ToRedisArgs};
use sha2::{Digest as _, Sha256};

/// Characters of the id's digest that a log line carries: 72 bits, enough to follow one
/// session through the logs.
const REFERENCE_LEN: usize = 12;

/// What follows the store's prefix in every session key.
const SESSIONS: &str = "s:";

/// The Redis key of one session, `{prefix}s:{base64url(sha256(id))}`, and the short reference
/// to it that logs carry.
///
/// Only the hash of the id reaches Redis, so a key listing, a dump or the slow log hands nobody
/// a cookie. The reference (the digest's first 12 characters) tells sessions apart in logs;
/// someone with the logs and Redis can find the key, as with the key itself, and nobody can
/// make a cookie from either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedisKey {
    key: String,
    /// Where the digest starts in `key`.
    digest_at: usize,
}

impl RedisKey {
    /// The key of the session with id `id`, under `prefix`.
    pub(crate) fn for_id(prefix: &str, id: &str) -> Self {
        Self::from_digest(prefix, &digest(id))
    }

    /// The part every session key under `prefix` starts with.
    pub(crate) fn sessions_prefix(prefix: &str) -> String {
        format!("{prefix}{SESSIONS}")
    }

    /// The key of the session whose id has this digest, under `prefix`.
    pub(crate) fn from_digest(prefix: &str, digest: &str) -> Self {
        let mut key = String::with_capacity(prefix.len() + SESSIONS.len() + digest.len());
        key.push_str(prefix);
        key.push_str(SESSIONS);
        let digest_at = key.len();
        key.push_str(digest);
        Self { key, digest_at }
    }

    /// The whole key, as Redis names it.
    pub(crate) fn as_str(&self) -> &str {
        &self.key
    }

    /// The digest of the id: what the user index lists.
    pub(crate) fn digest(&self) -> &str {
        &self.key[self.digest_at..]
    }

    /// The short reference that log lines carry.
    pub(crate) fn reference(&self) -> &str {
        reference(self.digest())
    }
}

/// The first characters of a digest: a session's reference.
pub(crate) fn reference(digest: &str) -> &str {
    digest.get(..REFERENCE_LEN).unwrap_or(digest)
}

/// Whether `text` has the shape of a reference (the first characters of a base64url digest),
/// so that it may go into a `MATCH` pattern as it is.
pub(crate) fn is_reference(text: &str) -> bool {
    text.len() == REFERENCE_LEN
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// base64url(sha256(`text`)).
fn digest(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

/// The key of the index of one user's sessions: `{prefix}u:{base64url(sha256(user))}`, where
/// `user` is the user entry's value as stored (JSON).
pub(crate) fn user_index(prefix: &str, user: &str) -> String {
    format!("{prefix}u:{}", digest(user))
}

/// The key of a login throttle's log of attempts for `what` (an account or an address) under
/// `prefix`.
pub(crate) fn throttle_counter(prefix: &str, kind: &str, what: &str) -> String {
    format!("{prefix}t:{kind}:{}", digest(what))
}

impl ToRedisArgs for RedisKey {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        out.write_arg(self.key.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::session_id;

    #[test]
    fn the_key_hides_the_id() {
        let id = session_id::generate();
        let key = RedisKey::for_id("app:", &id);
        assert!(key.key.starts_with("app:s:"));
        assert!(!key.key.contains(&id));
        assert_eq!(key, RedisKey::for_id("app:", &id));
        assert_eq!(key.key.len(), "app:s:".len() + 43);
    }

    #[test]
    fn the_reference_is_a_short_prefix_of_the_digest() {
        let key = RedisKey::for_id("app:s:", &session_id::generate());
        let digest = key.key.strip_prefix("app:s:s:").expect("the key's layout");
        assert_eq!(key.reference(), &digest[..REFERENCE_LEN]);
    }
}

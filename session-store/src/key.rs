//! The Redis key of a session: the only form in which a session id travels past the store's
//! front door.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use redis::{RedisWrite, ToRedisArgs};
use sha2::{Digest as _, Sha256};

/// Characters of the id's digest that a log line carries: 72 bits, enough to follow one
/// session through the logs.
const REFERENCE_LEN: usize = 12;

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
        let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(id.as_bytes()));
        let mut key = String::with_capacity(prefix.len() + 2 + digest.len());
        key.push_str(prefix);
        key.push_str("s:");
        let digest_at = key.len();
        key.push_str(&digest);
        Self { key, digest_at }
    }

    /// The short reference that log lines carry.
    pub(crate) fn reference(&self) -> &str {
        let digest = &self.key[self.digest_at..];
        digest.get(..REFERENCE_LEN).unwrap_or(digest)
    }
}

impl ToRedisArgs for RedisKey {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        out.write_arg(self.key.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session_id;

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

//! The session lifecycle events the store logs through `tracing`, after OWASP's session
//! management list: creation, destruction, expiry by absolute lifetime, requests with an
//! unknown or invalid id, and writes that lost to a logout.
//!
//! Every event is logged at `info` (`warn` for an invalid id, a sign of tampering) with a
//! `session` field that tells sessions apart: the first 12 characters of the id's SHA-256
//! digest, which is what the Redis key ends with. Someone with the logs and Redis can find the
//! key it stands for, as with the key itself; nobody can get a cookie from either. The id itself
//! is never logged.

/// Characters of the id's digest that a log line carries: 72 bits, enough to follow one
/// session through the logs.
const REFERENCE_LEN: usize = 12;

/// The part of a session's Redis key (`{prefix}s:{digest}`) that log lines carry.
fn reference(key: &str) -> &str {
    let digest = key.rsplit_once("s:").map_or(key, |(_, digest)| digest);
    digest.get(..REFERENCE_LEN).unwrap_or(digest)
}

/// A session was saved under a fresh id.
pub(crate) fn created(key: &str) {
    tracing::info!(
        event = "session.created",
        session = reference(key),
        "session created"
    );
}

/// A session was deleted (a logout, or the old id of a renewal).
pub(crate) fn deleted(key: &str) {
    tracing::info!(
        event = "session.deleted",
        session = reference(key),
        "session deleted"
    );
}

/// A session past its absolute lifetime was presented, and deleted.
pub(crate) fn expired(key: &str) {
    tracing::info!(
        event = "session.expired",
        session = reference(key),
        "session past its absolute lifetime: deleted"
    );
}

/// A well-formed id that leads to no session: it expired, was logged out, or never existed.
pub(crate) fn unknown(key: &str) {
    tracing::info!(
        event = "session.unknown",
        session = reference(key),
        "no session for this id (expired, ended or never issued)"
    );
}

/// A cookie that decrypted (or verified) but holds no id of ours: a forgery with the key, or
/// a bug; it never reached Redis.
pub(crate) fn invalid_id(len: usize) {
    tracing::warn!(
        event = "session.invalid_id",
        len,
        "session id of an invalid shape: treated as no session"
    );
}

/// A write found its session ended (a logout landed first) and was dropped.
pub(crate) fn update_dropped(key: &str) {
    tracing::info!(
        event = "session.update_dropped",
        session = reference(key),
        "session ended before its update was written: the update is dropped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_a_short_prefix_of_the_digest() {
        let key = crate::session_id::redis_key("app:s:", &crate::session_id::generate());
        let digest = key.strip_prefix("app:s:s:").expect("the key's layout");
        assert_eq!(reference(&key), &digest[..REFERENCE_LEN]);
    }
}

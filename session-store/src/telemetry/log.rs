//! The session lifecycle events the store logs through `tracing`, after OWASP's session
//! management list: creation, destruction, expiry by absolute lifetime, requests with an
//! unknown or invalid id, and writes that lost to a logout.
//!
//! Every event is logged at `info` (`warn` for an invalid id, a sign of tampering) with a
//! `session` field that tells sessions apart: the key's [reference](RedisKey::reference), the
//! first 12 characters of the id's SHA-256 digest. The id itself is never logged.

use crate::session::key::RedisKey;

/// One `info` line of the lifecycle.
fn lifecycle(event: &'static str, key: &RedisKey, message: &'static str) {
    tracing::info!(event, session = key.reference(), "{message}");
}

/// A session was saved under a fresh id.
pub(crate) fn created(key: &RedisKey) {
    lifecycle("session.created", key, "session created");
}

/// A session of actix-session's own store was moved to this store's layout.
pub(crate) fn migrated(key: &RedisKey) {
    lifecycle(
        "session.migrated",
        key,
        "session moved from actix-session's store",
    );
}

/// A session was revoked (by its user, from another session).
pub(crate) fn revoked(key: &RedisKey) {
    lifecycle("session.revoked", key, "session revoked");
}

/// A session was ended by a login of its user beyond the most sessions a user may hold.
pub(crate) fn evicted(key: &RedisKey) {
    lifecycle(
        "session.evicted",
        key,
        "session evicted: its user logged in beyond the limit",
    );
}

/// A session was deleted (a logout, or the old id of a renewal).
pub(crate) fn deleted(key: &RedisKey) {
    lifecycle("session.deleted", key, "session deleted");
}

/// A session past its absolute lifetime was presented, and deleted.
pub(crate) fn expired(key: &RedisKey) {
    lifecycle(
        "session.expired",
        key,
        "session past its absolute lifetime: deleted",
    );
}

/// A well-formed id that leads to no session: it expired, was logged out, or never existed.
pub(crate) fn unknown(key: &RedisKey) {
    lifecycle(
        "session.unknown",
        key,
        "no session for this id (expired, ended or never issued)",
    );
}

/// A write found its session ended (a logout landed first) and was dropped.
pub(crate) fn update_dropped(key: &RedisKey) {
    lifecycle(
        "session.update_dropped",
        key,
        "session ended before its update was written: the update is dropped",
    );
}

/// A session key held something no session is made of (bytes that are not UTF-8, a value
/// that is no hash): deleted, and the request goes on without a session.
pub(crate) fn corrupt(key: &RedisKey) {
    tracing::warn!(
        event = "session.corrupt",
        session = key.reference(),
        "the session's key held no session state: deleted"
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

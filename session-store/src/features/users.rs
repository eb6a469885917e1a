//! The index of a user's sessions: one sorted set per user, of the digests of their sessions'
//! ids, scored by the end of each session's absolute lifetime. It lets an application list a
//! user's sessions and revoke them (one, or all but the caller's) in O(entries of that user's
//! index), never with a `KEYS` or `SCAN` of Redis. A login beyond the most sessions a user may
//! hold ends the user's oldest, so an index stays small; one that is big all the same (stale
//! entries of sessions that idled out) is walked a chunk at a time and pruned as it goes.
//!
//! On a cluster the index and a session live in different slots, so no write covers both at
//! once; each is written so that a failure between the two writes heals by itself:
//!
//! - an entry is added before the session it names is written (login), and removed after the
//!   session is deleted (logout, renewal, revocation): what a failure in between leaves is an
//!   entry whose session is gone, and every read of the index checks its sessions and prunes
//!   such entries (and those past their lifetime, by score, on every write);
//! - a session records in its own hash (`\0i`) that it was indexed; a write to a session with
//!   a user that lacks the mark (the add failed) adds the entry again and sets it.
//!
//! So the index never names a session that a read of it would show as live when it is not,
//! and a session missing from it comes back on its next write. Reads of a session never touch
//! the index; writes touch it only when they change the user entry, or to heal.

use std::{collections::BTreeMap, time::SystemTime};

use futures_util::future::try_join_all;
use serde::Serialize;
use tracing::Level;

mod walk;

use walk::Walk;

use crate::{
    error::StoreError,
    features::events::{SessionEvent, SessionEventKind},
    features::location::CurrentSession,
    handle::Handle,
    session::clock::{millis, now_millis},
    session::fields,
    session::key::{self, RedisKey},
    session::scripts,
    telemetry::failure_log,
    telemetry::instruments::{Operation, Outcome},
};

/// The hash field that marks a session as listed in its user's index.
pub(crate) const INDEXED: &str = "\0i";

/// How many of a user's oldest sessions one login ends, at most, when the user holds more than
/// allowed (what a smaller limit, or a bug, left over is ended by later logins).
const EVICTIONS_PER_LOGIN: usize = 16;

/// One of a user's sessions, as [`RedisSessionStore::sessions_of`](crate::RedisSessionStore::sessions_of) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserSession {
    /// The session's reference: what [`revoke`](crate::RedisSessionStore::revoke) takes, and what the
    /// store's logs and events call it. Never the id.
    pub reference: String,
    /// Whether it is the session of the request that asked.
    pub current: bool,
    /// When it was created (its absolute lifetime counts from here).
    pub created: SystemTime,
    /// When it was last used (loaded or written).
    pub last_seen: SystemTime,
    /// When it ends if unused: the idle timeout from its last use, or its absolute lifetime,
    /// whichever comes first.
    pub expires: SystemTime,
    /// The entries the store exposes ([`exposed_entries`](crate::builder::RedisSessionStoreBuilder::exposed_entries)),
    /// by name, as stored (JSON).
    pub entries: BTreeMap<String, String>,
}

impl UserSession {
    /// An exposed entry, deserialized as actix-session's `Session::get` would.
    pub fn entry<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        serde_json::from_str(self.entries.get(name)?).ok()
    }
}

/// The users' index of a store.
pub(crate) struct Users<'a> {
    handle: &'a Handle,
}

impl<'a> Users<'a> {
    pub(crate) fn new(handle: &'a Handle) -> Self {
        Self { handle }
    }

    /// Adds the session at `key`, created at `created`, to the index of `user` (stored
    /// value), prunes the entries past their lifetime, and, when the user holds more than
    /// [`max_sessions_per_user`](crate::builder::RedisSessionStoreBuilder::max_sessions_per_user)
    /// sessions, ends the oldest (announced as evicted) and then removes them from the index:
    /// one round trip, and two more at the limit.
    pub(crate) async fn add(
        &self,
        user: &str,
        key: &RedisKey,
        created: u64,
    ) -> Result<(), StoreError> {
        let config = self.handle.config();
        let index = key::user_index(&config.key_prefix, user);
        let lifetime = millis(config.absolute_timeout);
        let oldest: Vec<String> = self
            .handle
            .backend()
            .run_script(&scripts::INDEX_ADD, &index, |cmd| {
                cmd.arg(created.saturating_add(lifetime))
                    .arg(key.digest())
                    .arg(now_millis())
                    // No entry outlives a lifetime (and the clock skew allowed) from now, so
                    // neither need the index.
                    .arg(lifetime.saturating_add(millis(config.clock_skew_tolerance)))
                    .arg(config.max_sessions_per_user)
                    .arg(EVICTIONS_PER_LOGIN);
            })
            .await?;
        if oldest.is_empty() {
            return Ok(());
        }
        let evicted = oldest
            .iter()
            .map(|digest| self.end_users_session(user, digest, SessionEventKind::Evicted));
        try_join_all(evicted).await?;
        self.prune(user, &as_strs(&oldest)).await
    }

    /// Removes the session at `key` from the index of `user` (stored value), once the
    /// session has ended or left the user. A failure here is logged, not returned: the change
    /// it follows has landed (failing the request would answer a logout that took effect with a
    /// `503`), and the entry it leaves is pruned by the index's next read.
    pub(crate) async fn remove(&self, user: &str, key: &RedisKey) {
        let index = key::user_index(&self.handle.config().key_prefix, user);
        if let Err(err) = self
            .handle
            .backend()
            .query::<()>(redis::cmd("ZREM").arg(index).arg(key.digest()))
            .await
        {
            failure_log::log(
                Level::WARN,
                "the user's index keeps an ended session until its next read",
                &err.chain().to_string(),
            );
        }
    }

    /// The sessions of `user`, oldest first: see `RedisSessionStore::sessions_of`.
    pub(crate) async fn list(
        &self,
        user: &impl Serialize,
        current: &CurrentSession,
    ) -> Result<Vec<UserSession>, StoreError> {
        let user = self.stored_user(user)?;
        let listing = async {
            let mut live = Vec::new();
            let mut walk = Walk::default();
            let mut ended = Vec::new();
            let mut chunk = self.next_newest(&user, &mut walk, &[]).await?;
            while let Some(digests) = chunk {
                // The next chunk is read (and the previous one's ended entries pruned) while
                // this one's sessions are checked: two requests in flight, not one.
                let (sessions, next) = futures_util::future::join(
                    self.inspect_live(&user, &digests),
                    self.next_newest(&user, &mut walk, &ended),
                )
                .await;
                ended.clear();
                let Some(sessions) = sessions? else {
                    ended = digests;
                    chunk = next?;
                    continue;
                };
                for (digest, session) in digests.into_iter().zip(sessions) {
                    match session {
                        Some(mut session) => {
                            session.current = current.digest() == Some(digest.as_str());
                            live.push(session);
                        }
                        None => ended.push(digest),
                    }
                }
                chunk = next?;
            }
            self.prune(&user, &as_strs(&ended)).await?;
            live.sort_by(|a, b| (a.created, &a.reference).cmp(&(b.created, &b.reference)));
            // A session read twice, had more than a walk remembers shared one score.
            live.dedup_by(|a, b| a.reference == b.reference);
            Ok(live)
        };
        self.handle
            .run(Operation::Sessions, listing, |_| Outcome::Ok)
            .await
    }

    /// Ends one session of `user`: see `RedisSessionStore::revoke`.
    pub(crate) async fn revoke(
        &self,
        user: &impl Serialize,
        reference: &str,
    ) -> Result<bool, StoreError> {
        let user = self.stored_user(user)?;
        if !key::is_reference(reference) {
            return Ok(false);
        }
        let revoking = async {
            let digests = self.find_reference(&user, reference).await?;
            let ends = digests
                .iter()
                .map(|digest| self.end_users_session(&user, digest, SessionEventKind::Revoked));
            let revoked = try_join_all(ends).await?.into_iter().any(|ended| ended);
            self.prune(&user, &as_strs(&digests)).await?;
            Ok(revoked)
        };
        self.handle
            .run(Operation::Revoke, revoking, |_| Outcome::Ok)
            .await
    }

    /// Ends every session of `user` but `except`'s: see `RedisSessionStore::revoke_all`.
    pub(crate) async fn revoke_all(
        &self,
        user: &impl Serialize,
        except: Option<&CurrentSession>,
    ) -> Result<usize, StoreError> {
        let user = self.stored_user(user)?;
        let kept = except.and_then(CurrentSession::digest);
        let revoking = async {
            let mut revoked = 0;
            let mut done: Vec<String> = Vec::new();
            loop {
                let (digests, last) = self.next_oldest(&user, kept, &done).await?;
                if digests.is_empty() {
                    return Ok(revoked);
                }
                let owners = if self.count_live(&digests).await? == 0 {
                    Vec::new()
                } else {
                    self.owners(&digests).await?
                };
                let ends = digests
                    .iter()
                    .zip(owners)
                    .filter(|(_, owner)| owner.as_deref() == Some(user.as_str()))
                    .map(|(digest, _)| {
                        self.end_users_session(&user, digest, SessionEventKind::Revoked)
                    });
                revoked += try_join_all(ends).await?.into_iter().filter(|e| *e).count();
                if last {
                    self.prune(&user, &as_strs(&digests)).await?;
                    return Ok(revoked);
                }
                done = digests;
            }
        };
        self.handle
            .run(Operation::Revoke, revoking, |_| Outcome::Ok)
            .await
    }

    /// Deletes the session of `digest` if it still belongs to `user`, atomically (a script),
    /// publishing its end as `kind` when the store publishes events. Whether it ended it.
    async fn end_users_session(
        &self,
        user: &str,
        digest: &str,
        kind: SessionEventKind,
    ) -> Result<bool, StoreError> {
        let config = self.handle.config();
        let key = RedisKey::from_digest(&config.key_prefix, digest);
        let field = fields::field_name(self.user_field()?).into_owned();
        let event = SessionEvent::new(kind, &key, Some(user));
        let publish = self
            .handle
            .publisher()
            .map(|publisher| (publisher.channel.clone(), publisher.message(event)));
        let ended: bool = self
            .handle
            .backend()
            .run_script(&scripts::REVOKE, &key, |cmd| {
                cmd.arg(&field).arg(user);
                if let Some((channel, message)) = &publish {
                    cmd.arg(channel).arg(message);
                }
            })
            .await?;
        if ended {
            match kind {
                SessionEventKind::Evicted => crate::telemetry::log::evicted(&key),
                _ => crate::telemetry::log::revoked(&key),
            }
        }
        Ok(ended)
    }

    /// The name of the user entry.
    fn user_field(&self) -> Result<&str, StoreError> {
        self.handle
            .config()
            .user_entry
            .as_deref()
            .ok_or(StoreError::NoUserEntry)
    }

    /// `user` as the user entry stores it (JSON, as actix-session serializes it).
    fn stored_user(&self, user: &impl Serialize) -> Result<String, StoreError> {
        self.user_field()?;
        serde_json::to_string(user).map_err(StoreError::InvalidUser)
    }
}

/// `strings` borrowed.
fn as_strs(strings: &[String]) -> Vec<&str> {
    strings.iter().map(String::as_str).collect()
}

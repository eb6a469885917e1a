//! The index of a user's sessions: one sorted set per user, of the digests of their sessions'
//! ids, scored by the end of each session's absolute lifetime. It lets an application list a
//! user's sessions and revoke them (one, or all but the caller's) in O(sessions of that user),
//! never with a `KEYS` or `SCAN` of Redis.
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

use futures_util::future::join_all;
use serde::Serialize;

use crate::{
    CurrentSession, RedisSessionStore, StoreError,
    batch::Batch,
    clock::{at, millis, now_millis},
    key::{self, RedisKey},
    lifecycle::{SessionEvent, SessionEventKind},
    metrics::{Operation, Outcome},
    scripts,
    state::{self, SessionState},
};

/// The hash field that marks a session as listed in its user's index.
pub(crate) const INDEXED: &str = "\0i";

/// One of a user's sessions, as [`RedisSessionStore::sessions_of`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserSession {
    /// The session's reference: what [`revoke`](RedisSessionStore::revoke) takes, and what the
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
    /// The entries the store exposes ([`exposed_entries`](crate::RedisSessionStoreBuilder::exposed_entries)),
    /// by name, as stored (JSON).
    pub entries: BTreeMap<String, String>,
}

impl UserSession {
    /// An exposed entry, deserialized as actix-session's `Session::get` would.
    pub fn entry<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        serde_json::from_str(self.entries.get(name)?).ok()
    }
}

impl RedisSessionStore {
    /// The value of the user entry in `state`, as stored (JSON), when the store names one.
    pub(crate) fn user_in<'a>(&self, state: &'a SessionState) -> Option<&'a str> {
        state
            .get(self.config().user_entry.as_deref()?)
            .map(String::as_str)
    }

    /// Adds the session at `key`, created at `created`, to the index of `user` (stored
    /// value), and prunes the entries past their lifetime: one round trip.
    pub(crate) async fn index_add(
        &self,
        user: &str,
        key: &RedisKey,
        created: u64,
    ) -> Result<(), StoreError> {
        let config = self.config();
        let index = key::user_index(&config.key_prefix, user);
        let lifetime = millis(config.absolute_timeout);
        let mut pipe = Batch::new();
        pipe.cmd("ZADD")
            .arg(&index)
            .arg(created.saturating_add(lifetime))
            .arg(key.digest())
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(now_millis())
            .ignore();
        // No entry outlives a lifetime from now, so neither need the index.
        pipe.cmd("PEXPIRE")
            .arg(&index)
            .arg(lifetime.saturating_add(60_000))
            .ignore();
        self.backend().query::<()>(&pipe).await
    }

    /// Removes the session at `key` from the index of `user` (stored value), once the
    /// session has ended or left the user. A failure here is logged, not returned: the change
    /// it follows has landed (failing the request would answer a logout that took effect with a
    /// `503`), and the entry it leaves is pruned by the index's next read.
    pub(crate) async fn index_remove(&self, user: &str, key: &RedisKey) {
        let index = key::user_index(&self.config().key_prefix, user);
        if let Err(err) = self
            .backend()
            .query::<()>(redis::cmd("ZREM").arg(index).arg(key.digest()))
            .await
        {
            tracing::warn!(error = %err, cause = ?err, session = key.reference(), "the user's index keeps an ended session until its next read");
        }
    }

    /// The sessions of `user` (the value the application keeps in the user entry, as it gave
    /// it to `Session::insert`), oldest first, with `current`'s marked. Ended sessions found
    /// in the index on the way are pruned from it.
    ///
    /// Costs one round trip for the index and one per session, sent together.
    ///
    /// # Errors
    /// [`StoreError::NoUserEntry`] when the store names no user entry, or the error of a
    /// round trip.
    pub async fn sessions_of(
        &self,
        user: &impl Serialize,
        current: &CurrentSession,
    ) -> Result<Vec<UserSession>, StoreError> {
        let user = self.stored_user(user)?;
        let backend = self.backend();
        let listing = backend.within_deadline(async {
            let digests = self.index_digests(&user).await?;
            let checked = join_all(digests.iter().map(|digest| self.inspect(&user, digest)));
            let mut live = Vec::new();
            let mut ended = Vec::new();
            for (digest, session) in digests.iter().zip(checked.await) {
                match session? {
                    Some(mut session) => {
                        session.current = current.digest() == Some(digest.as_str());
                        live.push(session);
                    }
                    None => ended.push(digest.as_str()),
                }
            }
            self.prune(&user, &ended).await?;
            live.sort_by_key(|session| session.created);
            Ok(live)
        });
        self.instruments()
            .observe(Operation::Sessions, backend.pool(), listing, |_| {
                Outcome::Ok
            })
            .await
    }

    /// Ends the session of `user` whose reference is `reference`; a request of that session
    /// in flight does not bring it back. Returns whether there was such a session.
    ///
    /// # Errors
    /// [`StoreError::NoUserEntry`] when the store names no user entry, or the error of a
    /// round trip.
    pub async fn revoke(&self, user: &impl Serialize, reference: &str) -> Result<bool, StoreError> {
        let user = self.stored_user(user)?;
        self.revoke_where(&user, |digest| key::reference(digest) == reference)
            .await
            .map(|revoked| revoked > 0)
    }

    /// Ends every session of `user`, but `except`'s when given (log out everywhere else):
    /// O(sessions of that user). Returns how many it ended.
    ///
    /// # Errors
    /// [`StoreError::NoUserEntry`] when the store names no user entry, or the error of a
    /// round trip.
    pub async fn revoke_all(
        &self,
        user: &impl Serialize,
        except: Option<&CurrentSession>,
    ) -> Result<usize, StoreError> {
        let user = self.stored_user(user)?;
        let kept = except.and_then(CurrentSession::digest);
        self.revoke_where(&user, |digest| Some(digest) != kept)
            .await
    }

    /// Revokes the sessions in `user`'s index that `chosen` picks; how many ended.
    async fn revoke_where(
        &self,
        user: &str,
        chosen: impl Fn(&str) -> bool,
    ) -> Result<usize, StoreError> {
        let backend = self.backend();
        let revoking = backend.within_deadline(async {
            let digests: Vec<String> = self
                .index_digests(user)
                .await?
                .into_iter()
                .filter(|digest| chosen(digest))
                .collect();
            let revoked = join_all(digests.iter().map(|digest| self.revoke_one(user, digest)));
            let revoked: Vec<bool> = revoked.await.into_iter().collect::<Result<_, _>>()?;
            let digests: Vec<&str> = digests.iter().map(String::as_str).collect();
            self.prune(user, &digests).await?;
            Ok(revoked.into_iter().filter(|revoked| *revoked).count())
        });
        self.instruments()
            .observe(Operation::Revoke, backend.pool(), revoking, |_| Outcome::Ok)
            .await
    }

    /// Deletes the session of `digest` if it still belongs to `user`, atomically (a script),
    /// publishing the revocation when the store publishes events.
    async fn revoke_one(&self, user: &str, digest: &str) -> Result<bool, StoreError> {
        let config = self.config();
        let key = RedisKey::from_digest(&config.key_prefix, digest);
        let field = state::field_name(self.user_field()?).into_owned();
        let event = SessionEvent::new(SessionEventKind::Revoked, &key, Some(user));
        let publish = self
            .publisher()
            .map(|publisher| (publisher.channel.clone(), publisher.message(event)));
        let revoked: bool = self
            .backend()
            .run_script(&scripts::REVOKE, &key, |cmd| {
                cmd.arg(&field).arg(user);
                if let Some((channel, message)) = &publish {
                    cmd.arg(channel).arg(message);
                }
            })
            .await?;
        if revoked {
            crate::events::revoked(&key);
        }
        Ok(revoked)
    }

    /// The digests `user`'s index lists.
    async fn index_digests(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let index = key::user_index(&self.config().key_prefix, user);
        self.backend()
            .query(redis::cmd("ZRANGE").arg(index).arg(0).arg(-1))
            .await
    }

    /// Removes `ended` from `user`'s index.
    async fn prune(&self, user: &str, ended: &[&str]) -> Result<(), StoreError> {
        if ended.is_empty() {
            return Ok(());
        }
        let index = key::user_index(&self.config().key_prefix, user);
        self.backend()
            .query::<()>(redis::cmd("ZREM").arg(index).arg(ended))
            .await
    }

    /// The session of `digest`, if it is live and still `user`'s: one round trip.
    async fn inspect(&self, user: &str, digest: &str) -> Result<Option<UserSession>, StoreError> {
        let config = self.config();
        let key = RedisKey::from_digest(&config.key_prefix, digest);
        let mut fields = vec![
            state::CREATED.to_owned(),
            state::field_name(self.user_field()?).into_owned(),
        ];
        fields.extend(
            config
                .exposed_entries
                .iter()
                .map(|name| state::field_name(name).into_owned()),
        );
        let mut pipe = Batch::new();
        pipe.cmd("HMGET").arg(&key).arg(&fields);
        pipe.cmd("PTTL").arg(&key);
        let (values, ttl): (Vec<Option<String>>, i64) = self.backend().query(&pipe).await?;
        let mut values = values.into_iter();
        let created = values
            .next()
            .flatten()
            .and_then(|created| created.parse().ok());
        let owner = values.next().flatten();
        let (Some(created), true, Ok(ttl)) =
            (created, owner.as_deref() == Some(user), u64::try_from(ttl))
        else {
            return Ok(None);
        };
        if !self.within_lifetime(created) {
            return Ok(None);
        }
        let entries = config
            .exposed_entries
            .iter()
            .zip(values)
            .filter_map(|(name, value)| Some((name.clone(), value?)))
            .collect();
        let now = now_millis();
        let idle = millis(config.idle_timeout);
        let end_of_life = created.saturating_add(millis(config.absolute_timeout));
        Ok(Some(UserSession {
            reference: key.reference().to_owned(),
            current: false,
            created: at(created),
            last_seen: at(now.saturating_sub(idle.saturating_sub(ttl))),
            expires: at(now.saturating_add(ttl).min(end_of_life)),
            entries,
        }))
    }

    /// The name of the user entry.
    fn user_field(&self) -> Result<&str, StoreError> {
        self.config()
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

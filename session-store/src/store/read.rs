//! Reading a session: one round trip for the hash and the sliding of its expiry.

use std::{sync::Arc, time::Duration};

use actix_session::storage::SessionKey;

use crate::{
    backend::batch::Batch,
    config::LegacyStep,
    error::StoreError,
    near::{Lookup, Mark},
    request::scope,
    session::{
        clock::millis,
        fields::{self, SessionState},
        key::RedisKey,
        scripts,
        seal::Seal,
        session_id::IdleClass,
    },
    store::{RedisSessionStore, legacy::OldSession},
    telemetry::{instruments, log},
};

/// A hash's fields and values, as Redis lists them.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// What a read of a session's hash found.
pub(super) enum Hash {
    /// A live session: its state, its creation time, the entries stored in the other form
    /// than the store writes now, and (with the near cache) the time it had left to live.
    Found(SessionState, u64, Vec<String>, Option<Duration>),
    /// Nothing at the key.
    Missing,
    /// Something that is no live session (past its lifetime, corrupt, a write's leftover),
    /// deleted.
    Ended,
}

impl RedisSessionStore {
    /// The session from this instance's near cache, with no Redis command, when it holds a
    /// copy it may serve; otherwise the mark a read from Redis must carry for its answer to
    /// become a copy (none without the near cache, or for a session read elsewhere: one of
    /// actix-session's own store).
    pub(super) fn read_near(&self, session_key: &SessionKey) -> Result<SessionState, Option<Mark>> {
        let Some(near) = self.handle.near() else {
            return Err(None);
        };
        let Some((key, _)) = self.redis_key(session_key) else {
            return Err(None);
        };
        if self.old_session(session_key).is_some() {
            return Err(None);
        }
        match near.lookup(key.as_str()) {
            Lookup::Hit(copy) if self.handle.within_lifetime(copy.created) => {
                scope::remember_shared(
                    session_key.as_ref(),
                    &key,
                    Arc::clone(&copy.state),
                    copy.created,
                    copy.rewrite.clone(),
                );
                Ok(SessionState::clone(&copy.state))
            }
            // A copy past its lifetime: Redis's answer ends the session.
            Lookup::Hit(_) => Err(None),
            Lookup::Miss(mark) => Err(Some(mark)),
        }
    }

    /// One round trip: the hash and the sliding of its expiry, pipelined. The absolute lifetime
    /// is checked here; a session out of it costs one more round trip, to delete it. A session
    /// of actix-session's own store is read where that store keeps it while the store
    /// interoperates, and moved from there when migrating (see `legacy.rs`). With the near
    /// cache, what it finds becomes a copy if `mark` (from [`Self::read_near`]) allows.
    pub(super) async fn load_state(
        &self,
        session_key: &SessionKey,
        mark: Option<Mark>,
    ) -> Result<Option<SessionState>, StoreError> {
        let Some((key, class)) = self.redis_key(session_key) else {
            return Ok(None);
        };
        let old = self.old_session(session_key);
        if let Some(old) = old
            .as_ref()
            .filter(|old| old.step == LegacyStep::Interoperate)
        {
            return self.load_old(session_key, &key, class, old).await;
        }
        let seal = self.seal(session_key, &key);
        match self.read_hash(&key, class, &seal, old.as_ref()).await? {
            Hash::Found(state, created, rewrite, left) => {
                let shared = Arc::new(state);
                if let Some(near) = self.handle.near() {
                    instruments::near_cache_miss();
                    // `left` is known only to a read that did not likely write: a copy made
                    // for a request that writes would be dropped by its own write at once.
                    if let (Some(mark), Some(left)) = (mark, left) {
                        let slide_after = self.idle_timeout(class);
                        let copy = (Arc::clone(&shared), created, rewrite.as_slice());
                        near.keep(key.as_str(), mark, copy, left, slide_after);
                    }
                }
                let state = SessionState::clone(&shared);
                scope::remember_shared(session_key.as_ref(), &key, shared, created, rewrite);
                Ok(Some(state))
            }
            Hash::Missing => match old {
                Some(old) => self.migrate(session_key, &key, class, &old).await,
                None => Ok(None),
            },
            Hash::Ended => Ok(None),
        }
    }

    /// Reads the hash at `key`, opening its values with `seal`, and slides its expiry by
    /// `class`'s idle timeout. A session whose move from `old` was left unfinished is settled
    /// on the way.
    pub(super) async fn read_hash(
        &self,
        key: &RedisKey,
        class: IdleClass,
        seal: &Seal<'_>,
        old: Option<&OldSession>,
    ) -> Result<Hash, StoreError> {
        let (fields, left) = match self.fetch_hash(key, class).await {
            // Something other than a hash at the key: no session of ours either.
            Err(StoreError::Redis(err)) if err.code() == Some("WRONGTYPE") => (None, None),
            result => {
                let (fields, left) = result?;
                (Some(fields), left)
            }
        };
        if fields.as_ref().is_some_and(Vec::is_empty) {
            log::unknown(key);
            return Ok(Hash::Missing);
        }
        let Some(stored) = fields.and_then(|fields| fields::decode(fields, seal)) else {
            log::corrupt(key);
            self.delete_key(key).await?;
            return Ok(Hash::Ended);
        };
        let Some(created) = stored.created else {
            // Entries without a creation time: what a write that raced a logout left behind.
            // Never a session; the PEXPIRE above must not keep it alive.
            log::unknown(key);
            self.delete_key(key).await?;
            return Ok(Hash::Ended);
        };
        let user = self.handle.user_in(&stored.state);
        if !self.handle.within_lifetime(created) {
            self.end_expired(key, user).await?;
            return Ok(Hash::Ended);
        }
        if let (Some(began), Some(old)) = (stored.migrating, old)
            && !self.settle_move(key, old, began, user).await?
        {
            return Ok(Hash::Ended);
        }
        seal.remember(&stored.state);
        // A move settled on the way changed the hash since it was read: no copy of it.
        let left = left.filter(|_| stored.migrating.is_none());
        Ok(Hash::Found(stored.state, created, stored.rewrite, left))
    }

    /// The hash's fields, in one round trip that slides its expiry: on every read, or with the
    /// near cache only once the slide is due (a script), which also tells how long the
    /// session has left to live. A request that likely writes slides it as without the near
    /// cache (its write slides it anyway, and it keeps no copy).
    async fn fetch_hash(
        &self,
        key: &RedisKey,
        class: IdleClass,
    ) -> Result<(Fields, Option<Duration>), StoreError> {
        let backend = self.handle.backend();
        if self.handle.near().is_none() || scope::likely_writes() {
            let mut pipe = Batch::new();
            pipe.cmd("HGETALL").arg(key);
            pipe.cmd("PEXPIRE")
                .arg(key)
                .arg(self.idle_millis(class))
                .ignore();
            let (fields,) = backend.query(&pipe).await?;
            return Ok((fields, None));
        }
        let slide_after = millis(self.idle_timeout(class));
        let ttl = self.idle_millis(class);
        let (left, fields): (i64, Fields) = backend
            .run_read_script(&scripts::NEAR_READ, key, |cmd| {
                cmd.arg(slide_after).arg(ttl);
            })
            .await?;
        let left = u64::try_from(left).ok().map(Duration::from_millis);
        Ok((fields, left))
    }

    pub(super) async fn touch(&self, session_key: &SessionKey) -> Result<(), StoreError> {
        let Some((key, class)) = self.redis_key(session_key) else {
            return Ok(());
        };
        // A plain PEXPIRE cannot create a key, so it cannot revive an ended session. With the
        // near cache, the read's script slides it only when due.
        if self.handle.near().is_some() {
            self.fetch_hash(&key, class).await?;
            return Ok(());
        }
        let idle = self.idle_millis(class);
        self.handle
            .backend()
            .query::<()>(redis::cmd("PEXPIRE").arg(&key).arg(idle))
            .await
    }
}

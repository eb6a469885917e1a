//! Reading a session: one round trip for the hash and the sliding of its expiry.

use actix_session::storage::SessionKey;

use crate::{
    backend::batch::Batch,
    config::LegacyStep,
    error::StoreError,
    request::scope,
    session::{
        fields::{self, SessionState},
        key::RedisKey,
        seal::Seal,
        session_id::IdleClass,
    },
    store::{RedisSessionStore, legacy::OldSession},
    telemetry::log,
};

/// What a read of a session's hash found.
pub(super) enum Hash {
    /// A live session: its state, its creation time and the entries stored in the other form
    /// than the store writes now.
    Found(SessionState, u64, Vec<String>),
    /// Nothing at the key.
    Missing,
    /// Something that is no live session (past its lifetime, corrupt, a write's leftover),
    /// deleted.
    Ended,
}

impl RedisSessionStore {
    /// One round trip: the hash and the sliding of its expiry, pipelined. The absolute lifetime
    /// is checked here; a session out of it costs one more round trip, to delete it. A session
    /// of actix-session's own store is read where that store keeps it while the store
    /// interoperates, and moved from there when migrating (see `legacy.rs`).
    pub(super) async fn load_state(
        &self,
        session_key: &SessionKey,
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
            Hash::Found(state, created, rewrite) => {
                scope::remember(session_key.as_ref(), &key, &state, created, rewrite);
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
        let mut pipe = Batch::new();
        pipe.cmd("HGETALL").arg(key);
        pipe.cmd("PEXPIRE")
            .arg(key)
            .arg(self.idle_millis(class))
            .ignore();
        let fields = match self.handle.backend().query(&pipe).await {
            // Something other than a hash at the key: no session of ours either.
            Err(StoreError::Redis(err)) if err.code() == Some("WRONGTYPE") => None,
            result => Some(result?),
        };
        if fields
            .as_ref()
            .is_some_and(|(fields,): &(Vec<_>,)| fields.is_empty())
        {
            log::unknown(key);
            return Ok(Hash::Missing);
        }
        let Some(stored) = fields.and_then(|(fields,)| fields::decode(fields, seal)) else {
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
        Ok(Hash::Found(stored.state, created, stored.rewrite))
    }

    pub(super) async fn touch(&self, session_key: &SessionKey) -> Result<(), StoreError> {
        let Some((key, class)) = self.redis_key(session_key) else {
            return Ok(());
        };
        // A plain PEXPIRE cannot create a key, so it cannot revive an ended session.
        let idle = self.idle_millis(class);
        self.handle
            .backend()
            .query::<()>(redis::cmd("PEXPIRE").arg(&key).arg(idle))
            .await
    }
}

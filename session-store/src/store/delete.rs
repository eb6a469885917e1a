//! Ending a session: a logout, or a session found past its absolute lifetime.

use actix_session::storage::SessionKey;
use redis::Cmd;

use crate::{
    backend::batch::Batch, error::StoreError, features::events::SessionEventKind,
    features::users::Users, request::scope, session::key::RedisKey, session::scripts,
    store::RedisSessionStore, telemetry::log,
};

impl RedisSessionStore {
    /// A plain `DEL` of `key`; how many keys it removed.
    pub(super) async fn delete_key(&self, key: &RedisKey) -> Result<u64, StoreError> {
        self.handle.opened().forget(key);
        self.handle
            .backend()
            .query(redis::cmd("DEL").arg(key))
            .await
    }

    /// Deletes the session at `key`, found past its absolute lifetime, and announces its
    /// expiry (with `user`, its user) when the store publishes events.
    pub(super) async fn end_expired(
        &self,
        key: &RedisKey,
        user: Option<&str>,
    ) -> Result<(), StoreError> {
        log::expired(key);
        let announcement = self.announce(SessionEventKind::Expired, key, user, None);
        self.delete_announced(key, announcement).await?;
        Ok(())
    }

    /// Deletes the session at `key`, as a write: a plain `DEL`, or a script that announces it
    /// when there is an announcement to make. How many keys it deleted.
    pub(super) async fn delete_announced(
        &self,
        key: &RedisKey,
        announcement: Option<(String, String)>,
    ) -> Result<u64, StoreError> {
        self.handle.opened().forget(key);
        let backend = &self.handle.backend();
        if let Some((channel, message)) = announcement {
            let announce = |cmd: &mut Cmd| {
                cmd.arg(&channel).arg(&message);
            };
            return backend.run_script(&scripts::DELETE, key, announce).await;
        }
        let mut pipe = Batch::new();
        pipe.cmd("DEL").arg(key);
        let (removed,): (u64,) = backend.write(pipe).await?;
        Ok(removed)
    }

    /// A logout. A session of actix-session's own store's shape is deleted where that store
    /// keeps it first, and then where this store keeps it (a migrating instance may have moved
    /// it): a move under way then finds the old key gone and gives up (see `legacy.rs`).
    pub(super) async fn delete_state(&self, session_key: &SessionKey) -> Result<(), StoreError> {
        let Some((key, _)) = self.redis_key(session_key) else {
            return Ok(());
        };
        let removed_old = match self.old_session(session_key) {
            Some(old) => self.delete_old(&old).await?,
            None => false,
        };
        let user = self
            .handle
            .config()
            .user_entry
            .as_deref()
            .and_then(|name| scope::loaded_entry(&key, name));
        let announcement = self.announce(SessionEventKind::Deleted, &key, user.as_deref(), None);
        let removed = self.delete_announced(&key, announcement).await? > 0 || removed_old;
        scope::note_deleted(&key, removed);
        if removed {
            log::deleted(&key);
        }
        if let Some(user) = user {
            Users::new(&self.handle).remove(&user, &key).await;
        }
        Ok(())
    }
}

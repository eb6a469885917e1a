//! Reading a session: one round trip for the hash and the sliding of its expiry.

use actix_session::storage::SessionKey;

use crate::{
    backend::batch::Batch,
    error::StoreError,
    request::scope,
    session::fields::{self, SessionState},
    store::RedisSessionStore,
    telemetry::log,
};

impl RedisSessionStore {
    /// One round trip: the hash and the sliding of its expiry, pipelined. The absolute lifetime
    /// is checked here; a session out of it costs one more round trip, to delete it.
    pub(super) async fn load_state(
        &self,
        session_key: &SessionKey,
    ) -> Result<Option<SessionState>, StoreError> {
        let Some((key, class)) = self.redis_key(session_key) else {
            return Ok(None);
        };
        let mut pipe = Batch::new();
        pipe.cmd("HGETALL").arg(&key);
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(self.idle_millis(class))
            .ignore();
        let fields = match self.handle.backend().query(&pipe).await {
            // Something other than a hash at the key: no session of ours either.
            Err(StoreError::Redis(err)) if err.code() == Some("WRONGTYPE") => None,
            result => Some(result?),
        };
        let Some(stored) = fields.and_then(|(fields,)| fields::decode(fields)) else {
            log::corrupt(&key);
            self.delete_key(&key).await?;
            return Ok(None);
        };
        let Some(created) = stored.created else {
            log::unknown(&key);
            if !stored.state.is_empty() {
                // Entries without a creation time: what a write that raced a logout left
                // behind. Never a session; the PEXPIRE above must not keep it alive.
                self.delete_key(&key).await?;
            }
            return Ok(None);
        };
        if !self.handle.within_lifetime(created) {
            self.end_expired(&key, self.handle.user_in(&stored.state))
                .await?;
            return Ok(None);
        }
        scope::remember(session_key.as_ref(), &key, &stored.state, created);
        Ok(Some(stored.state))
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

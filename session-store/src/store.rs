//! [`RedisSessionStore`]: actix-session's `SessionStore` on Redis, and the features built on
//! the same Redis. The session rules live in this module's files (`rules`, `read`, `write`,
//! `delete`); each feature in [`features`](crate::features), given the store's
//! [`Handle`]; how a request reaches Redis in [`backend`](crate::backend).

mod delete;
mod legacy;
mod read;
mod rules;
mod write;

use std::{sync::Arc, time::Instant};

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use serde::Serialize;
use tracing::Level;

use crate::{
    backend::pool::{Pool, Topology},
    config::{Config, WhenUnavailable},
    error::StoreError,
    features::{
        location::{self, CurrentSession, SessionLocation},
        subscriber::{self, SessionEvents},
        throttle::{LoginThrottle, ThrottleLimits},
        users::{UserSession, Users},
    },
    handle::Handle,
    request::scope,
    session::fields::SessionState,
    telemetry::{
        failure_log,
        instruments::{Operation, Outcome},
    },
};

/// A session store for actix-session that keeps each session as a Redis hash.
///
/// Cheap to clone: clones share the pool and settings. See the [crate docs](crate) for a guide.
#[derive(Debug, Clone)]
pub struct RedisSessionStore {
    handle: Arc<Handle>,
}

impl RedisSessionStore {
    pub(crate) fn from_parts(pool: Pool, config: Config) -> Self {
        Self {
            handle: Arc::new(Handle::new(pool, config)),
        }
    }

    /// The pool the store talks to Redis through.
    pub fn pool(&self) -> &Pool {
        self.handle.backend().pool()
    }

    /// The kind of deployment the store talks to.
    pub fn topology(&self) -> Topology {
        self.pool().manager().topology()
    }

    /// Checks that Redis answers a `PING` through the pool, within the store's timeouts: the
    /// probe for a health endpoint. Its failure is not the request's: a handler that calls it
    /// behind [`TrackChanges`](crate::request::middleware::TrackChanges) chooses its own answer.
    ///
    /// # Errors
    /// The [`StoreError`] that a session operation would meet right now.
    pub async fn health_check(&self) -> Result<(), StoreError> {
        let ping = redis::cmd("PING");
        let answer = self.handle.backend().query::<()>(&ping);
        self.handle
            .run(Operation::HealthCheck, answer, |()| Outcome::Ok)
            .await
    }

    /// The sessions of `user` (the value the application keeps in the user entry, as it gave
    /// it to `Session::insert`), oldest first, with `current`'s marked. Ended sessions found
    /// in the index on the way are pruned from it.
    ///
    /// Reads the index newest first, 1,000 entries at a time: per chunk one round trip for
    /// the entries (with the removal of the ended ones found before), one `EXISTS` of their
    /// sessions, and, when some exist, one for their fields (sent together).
    ///
    /// # Errors
    /// [`StoreError::NoUserEntry`] when the store names no user entry, or the error of a
    /// round trip.
    pub async fn sessions_of(
        &self,
        user: &impl Serialize,
        current: &CurrentSession,
    ) -> Result<Vec<UserSession>, StoreError> {
        Users::new(&self.handle).list(user, current).await
    }

    /// Ends the session of `user` whose reference is `reference`; a request of that session
    /// in flight does not bring it back. Returns whether there was such a session.
    ///
    /// Finds it with `ZSCAN ... MATCH` (Redis filters the index, 10,000 entries per
    /// round trip), then ends it: O(entries in the user's index) on the server, few round trips.
    ///
    /// # Errors
    /// [`StoreError::NoUserEntry`] when the store names no user entry, or the error of a
    /// round trip.
    pub async fn revoke(&self, user: &impl Serialize, reference: &str) -> Result<bool, StoreError> {
        Users::new(&self.handle).revoke(user, reference).await
    }

    /// Ends every session of `user`, but `except`'s when given (log out everywhere else), and
    /// empties the index of all but that one. Returns how many it ended.
    ///
    /// Works through the index oldest first, 1,000 entries at a time: per chunk one round
    /// trip for the entries, one to see which are still `user`'s sessions (sent together), one
    /// to end those (each a script, sent together), one to remove the chunk from the index.
    ///
    /// # Errors
    /// [`StoreError::NoUserEntry`] when the store names no user entry, or the error of a
    /// round trip.
    pub async fn revoke_all(
        &self,
        user: &impl Serialize,
        except: Option<&CurrentSession>,
    ) -> Result<usize, StoreError> {
        Users::new(&self.handle).revoke_all(user, except).await
    }

    /// Where the session of `current` lives now, asked of Redis (one round trip), or `None`
    /// when the request has no session of its own yet.
    ///
    /// # Errors
    /// The [`StoreError`] of the question to Redis.
    pub async fn location(
        &self,
        current: &CurrentSession,
    ) -> Result<Option<SessionLocation>, StoreError> {
        location::locate(&self.handle, current).await
    }

    /// Subscribes to the lifecycle events that stores on this Redis with this key prefix
    /// publish ([`publish_events`](crate::builder::RedisSessionStoreBuilder::publish_events)), from
    /// every instance. The subscription runs on a task of its own, reconnects after a Redis
    /// restart or failover (and says so), and ends when the stream is dropped.
    ///
    /// When the server sends keyspace notifications for expired keys
    /// (`notify-keyspace-events` with `Ex`; the store never sets it), idle sessions that Redis
    /// expires come as [`SessionEventKind::Expired`](crate::features::events::SessionEventKind::Expired). On a cluster every node the store was
    /// given is listened to for them (each primary expires its own keys; a replica promoted by
    /// a failover is heard from if it was among them).
    ///
    /// Must be called within a tokio runtime.
    pub fn events(&self) -> SessionEvents {
        subscriber::subscribe(self.pool(), &self.handle.config().key_prefix)
    }

    /// A login throttle with `limits`, on this store's Redis.
    pub fn login_throttle(&self, limits: ThrottleLimits) -> LoginThrottle {
        LoginThrottle::new(Arc::clone(&self.handle), limits)
    }
}

/// The store's idle timeout and absolute lifetime govern the state's life in Redis; the `ttl`
/// actix-session passes (its `session_ttl`) is left to the cookie, but for the sessions that
/// live by actix-session's own store's rules while the store interoperates with it.
impl SessionStore for RedisSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        let found = |state: &Option<SessionState>| {
            if state.is_some() {
                Outcome::Ok
            } else {
                Outcome::NotFound
            }
        };
        // A copy in the near cache is served here, outside the deadline and the boxing
        // around operations that wait for Redis: a hit waits for nothing.
        let started = Instant::now();
        let mark = match self.read_near(session_key) {
            Ok(state) => {
                self.handle.instruments().near_hit(started);
                return Ok(Some(state));
            }
            Err(mark) => mark,
        };
        match self
            .handle
            .run(Operation::Load, self.load_state(session_key, mark), found)
            .await
        {
            Err(err)
                if err.is_unavailable()
                    && self.handle.config().when_unavailable == WhenUnavailable::Anonymous
                    && scope::may_go_anonymous() =>
            {
                failure_log::log(
                    Level::WARN,
                    "Redis unavailable: the request goes on without its session",
                    &err.chain().to_string(),
                );
                scope::note_anonymous();
                Ok(None)
            }
            result => Ok(result?),
        }
    }

    async fn save(
        &self,
        session_state: SessionState,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        let saved = self.save_state(&session_state, ttl);
        Ok(self
            .handle
            .run(Operation::Save, saved, |_| Outcome::Ok)
            .await?)
    }

    /// Writes nothing when the session ended in the meantime, and hands back the same key: the
    /// client keeps a cookie that leads nowhere, so it has no session, as after the logout.
    async fn update(
        &self,
        session_key: SessionKey,
        session_state: SessionState,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        self.forget_copy(&session_key);
        let written = session_key.as_ref().to_owned();
        let updated = self.update_state(session_key, &session_state, ttl);
        let dropped = |(_, dropped): &(SessionKey, bool)| {
            if *dropped {
                Outcome::Dropped
            } else {
                Outcome::Ok
            }
        };
        let updated = self.handle.run(Operation::Update, updated, dropped).await;
        if let Ok(written) = SessionKey::try_from(written) {
            self.forget_copy(&written);
        }
        let (session_key, _) = updated?;
        Ok(session_key)
    }

    /// Costs nothing behind [`TrackChanges`](crate::request::middleware::TrackChanges), where the request's `load`
    /// slid the expiry already (nor is it counted in the metrics, as it does nothing);
    /// otherwise one `PEXPIRE`. A session that lives by actix-session's own store's rules
    /// gets that store's `EXPIRE` by `ttl`.
    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        ttl: &CookieDuration,
    ) -> anyhow::Result<()> {
        let old = self
            .interoperating(session_key)
            .filter(|_| scope::loaded_in_old_layout(session_key.as_ref()) != Some(false));
        if old.is_none() && scope::was_loaded(session_key.as_ref()) {
            return Ok(());
        }
        let touched = async {
            if let Some(old) = old
                && self.touch_old(&old, ttl).await?
            {
                return Ok(());
            }
            self.touch(session_key).await
        };
        Ok(self
            .handle
            .run(Operation::UpdateTtl, touched, |()| Outcome::Ok)
            .await?)
    }

    async fn delete(&self, session_key: &SessionKey) -> anyhow::Result<()> {
        self.forget_copy(session_key);
        let deleted = self.delete_state(session_key);
        let deleted = self
            .handle
            .run(Operation::Delete, deleted, |()| Outcome::Ok)
            .await;
        self.forget_copy(session_key);
        Ok(deleted?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layer around an operation that held it by value would copy it again on every
    /// call: kilobytes of `memmove` per request, as much CPU as the rest of the store's work.
    #[tokio::test]
    async fn the_future_of_each_operation_stays_small() {
        const LIMIT: usize = 1024;
        let store = RedisSessionStore::from_url("redis://127.0.0.1:1").expect("a valid URL");
        let key = || SessionKey::try_from("k".repeat(64)).expect("a valid key");
        let ttl = CookieDuration::seconds(1);
        let sizes = [
            ("load", size_of_val(&store.load(&key()))),
            ("save", size_of_val(&store.save(SessionState::new(), &ttl))),
            (
                "update",
                size_of_val(&store.update(key(), SessionState::new(), &ttl)),
            ),
            ("update_ttl", size_of_val(&store.update_ttl(&key(), &ttl))),
            ("delete", size_of_val(&store.delete(&key()))),
        ];
        for (operation, size) in sizes {
            assert!(size <= LIMIT, "{operation}: a future of {size} bytes");
        }
    }
}

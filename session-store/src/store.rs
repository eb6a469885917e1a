//! [`RedisSessionStore`]: actix-session's `SessionStore` on Redis.

use std::{future::Future, sync::Arc};

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use deadpool_redis::{Connection, Pool};
use redis::{RedisResult, ScriptInvocation};

use crate::{
    StoreError,
    config::{Config, RedisSessionStoreBuilder},
    recent::RecentTouches,
    scripts, session_id,
    state::{self, SessionState},
};

/// How many fresh ids `save` tries before it gives up. One is all a CSPRNG ever needs.
const SAVE_ATTEMPTS: usize = 3;

/// A session store for actix-session that keeps each session as a Redis hash.
///
/// Cheap to clone: clones share the pool and settings. See the [crate docs](crate) for a guide.
#[derive(Debug, Clone)]
pub struct RedisSessionStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    config: Config,
    recent: RecentTouches,
}

impl RedisSessionStore {
    /// A store with the default settings on an existing pool (built with `Runtime::Tokio1`).
    pub fn new(pool: Pool) -> Self {
        Self::builder().build(pool)
    }

    /// A store with the default settings on a new pool for `url`.
    ///
    /// # Errors
    /// [`StoreError::CreatePool`] when the URL cannot be used.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        Self::builder().build_with_url(url)
    }

    /// A builder to choose settings other than the defaults.
    pub fn builder() -> RedisSessionStoreBuilder {
        RedisSessionStoreBuilder::default()
    }

    /// The pool the store talks to Redis through.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Checks that Redis answers a `PING` through the pool, within the store's timeouts: the
    /// probe for a health endpoint.
    ///
    /// # Errors
    /// The [`StoreError`] that a session operation would meet right now.
    pub async fn health_check(&self) -> Result<(), StoreError> {
        let mut connection = self.connection().await?;
        self.bounded(redis::cmd("PING").exec_async(&mut connection))
            .await
    }

    pub(crate) fn from_parts(pool: Pool, config: Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                config,
                recent: RecentTouches::new(),
            }),
        }
    }

    /// The Redis key for a session id, or `None` when the id is not of our shape, in which case
    /// it must not reach Redis at all.
    fn redis_key(&self, id: &SessionKey) -> Option<String> {
        let id = id.as_ref();
        if session_id::is_well_formed(id) {
            Some(session_id::redis_key(&self.inner.config.key_prefix, id))
        } else {
            tracing::warn!("session key of an invalid shape, treated as no session");
            None
        }
    }

    /// A script call on `key` with the idle timeout and absolute lifetime as its first arguments.
    fn invocation<'a>(&self, script: &'a redis::Script, key: &str) -> ScriptInvocation<'a> {
        let config = &self.inner.config;
        let mut invocation = script.prepare_invoke();
        invocation
            .key(key)
            .arg(millis(config.idle_timeout))
            .arg(millis(config.absolute_timeout));
        invocation
    }

    /// Appends the state's entries as field, value pairs, after checking its size.
    fn add_state(
        &self,
        invocation: &mut ScriptInvocation<'_>,
        state: &SessionState,
    ) -> Result<(), StoreError> {
        let size = state::size(state);
        let limit = self.inner.config.max_state_size;
        if size > limit {
            return Err(StoreError::StateTooLarge { size, limit });
        }
        for (name, value) in state {
            invocation.arg(state::field_name(name).as_ref()).arg(value);
        }
        Ok(())
    }

    async fn connection(&self) -> Result<Connection, StoreError> {
        let timeouts = &self.inner.config.pool_timeouts;
        Ok(self.inner.pool.timeout_get(timeouts).await?)
    }

    /// Runs one Redis request, bounded by the command timeout.
    async fn bounded<T>(
        &self,
        request: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let timeout = self.inner.config.command_timeout;
        tokio::time::timeout(timeout, request)
            .await
            .map_err(|_| StoreError::CommandTimeout(timeout))?
            .map_err(StoreError::from)
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection().await?;
        self.bounded(invocation.invoke_async(&mut connection)).await
    }

    async fn load_state(&self, id: &SessionKey) -> Result<Option<SessionState>, StoreError> {
        let Some(key) = self.redis_key(id) else {
            return Ok(None);
        };
        let mut invocation = self.invocation(&scripts::TOUCH, &key);
        invocation.arg("1");
        let Some(fields) = self
            .run::<Option<Vec<(Vec<u8>, Vec<u8>)>>>(&invocation)
            .await?
        else {
            return Ok(None);
        };
        self.inner.recent.record(&key);
        state::decode(fields).map(Some)
    }

    async fn save_state(&self, state: &SessionState) -> Result<SessionKey, StoreError> {
        for _ in 0..SAVE_ATTEMPTS {
            let id = session_id::generate();
            let key = session_id::redis_key(&self.inner.config.key_prefix, &id);
            let mut invocation = self.invocation(&scripts::SAVE, &key);
            self.add_state(&mut invocation, state)?;
            if self.run::<bool>(&invocation).await? {
                tracing::debug!("session created");
                return Ok(SessionKey::try_from(id).expect("a 43-byte id is a valid session key"));
            }
        }
        Err(StoreError::IdCollision)
    }

    async fn update_state(&self, id: &SessionKey, state: &SessionState) -> Result<(), StoreError> {
        let Some(key) = self.redis_key(id) else {
            return Ok(());
        };
        self.inner.recent.take(&key);
        let mut invocation = self.invocation(&scripts::UPDATE, &key);
        self.add_state(&mut invocation, state)?;
        if !self.run::<bool>(&invocation).await? {
            tracing::info!("session ended before its update was written; the update is dropped");
        }
        Ok(())
    }

    async fn touch(&self, id: &SessionKey) -> Result<(), StoreError> {
        let Some(key) = self.redis_key(id) else {
            return Ok(());
        };
        if self.inner.recent.take(&key) {
            return Ok(());
        }
        let invocation = self.invocation(&scripts::TOUCH, &key);
        self.run::<Option<i64>>(&invocation).await?;
        Ok(())
    }

    async fn delete_state(&self, id: &SessionKey) -> Result<(), StoreError> {
        let Some(key) = self.redis_key(id) else {
            return Ok(());
        };
        self.inner.recent.take(&key);
        let mut connection = self.connection().await?;
        self.bounded(redis::cmd("DEL").arg(&key).exec_async(&mut connection))
            .await?;
        tracing::debug!("session deleted");
        Ok(())
    }
}

/// The store's idle timeout and absolute lifetime govern the state's life in Redis; the `ttl`
/// actix-session passes (its `session_ttl`) is left to the cookie.
impl SessionStore for RedisSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        Ok(self.load_state(session_key).await?)
    }

    async fn save(
        &self,
        session_state: SessionState,
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        Ok(self.save_state(&session_state).await?)
    }

    /// Writes nothing when the session ended in the meantime, and hands back the same key: the
    /// client keeps a cookie that leads nowhere, so it has no session, as after the logout.
    async fn update(
        &self,
        session_key: SessionKey,
        session_state: SessionState,
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        self.update_state(&session_key, &session_state).await?;
        Ok(session_key)
    }

    /// Costs no round trip when a `load` of this session slid its expiry moments ago.
    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        _ttl: &CookieDuration,
    ) -> anyhow::Result<()> {
        Ok(self.touch(session_key).await?)
    }

    async fn delete(&self, session_key: &SessionKey) -> anyhow::Result<()> {
        Ok(self.delete_state(session_key).await?)
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

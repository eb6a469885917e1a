//! [`RedisSessionStore`]: actix-session's `SessionStore` on Redis.

use std::{
    future::Future,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, RedisResult, ServerErrorKind};

use crate::{
    StoreError,
    config::{Config, RedisSessionStoreBuilder, WhenUnavailable},
    events,
    pool::{Outcome, Pool, SharedConnection},
    scripts::{self, LuaScript},
    session_id,
    state::{self, SessionState},
    tracking::{self, Changes},
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
}

impl RedisSessionStore {
    /// A store with the default settings on an existing pool (built with `Runtime::Tokio1`).
    pub fn new(pool: Pool) -> Self {
        Self::builder().build(pool)
    }

    /// A store with the default settings on a new pool for `url`.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] when the URL cannot be used.
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
        self.bounded_op(self.query::<()>(&redis::cmd("PING"), None))
            .await
    }

    pub(crate) fn from_parts(pool: Pool, config: Config) -> Self {
        Self {
            inner: Arc::new(Inner { pool, config }),
        }
    }

    /// The Redis key for a session id, or `None` when the id is not of our shape, in which case
    /// it must not reach Redis at all.
    fn redis_key(&self, id: &SessionKey) -> Option<String> {
        let id = id.as_ref();
        if session_id::is_well_formed(id) {
            Some(session_id::redis_key(&self.inner.config.key_prefix, id))
        } else {
            events::invalid_id(id.len());
            None
        }
    }

    /// `EVALSHA` of `script` on `key`, with the idle timeout, the absolute lifetime and the
    /// time now as its first arguments.
    fn script_call(&self, script: &LuaScript, key: &str) -> Cmd {
        let config = &self.inner.config;
        let mut cmd = script.on_key(key);
        cmd.arg(millis(config.idle_timeout))
            .arg(millis(config.absolute_timeout))
            .arg(now_millis());
        cmd
    }

    fn check_size(&self, state: &SessionState) -> Result<(), StoreError> {
        let size = state::size(state);
        let limit = self.inner.config.max_state_size;
        if size > limit {
            return Err(StoreError::StateTooLarge { size, limit });
        }
        Ok(())
    }

    /// Runs one store operation within the store's [deadline](Config::deadline), and tells the
    /// request's scope whether it failed because Redis was unavailable (which
    /// [`TrackChanges`](crate::TrackChanges) answers with a `503`). actix-session stops at the
    /// first failed operation, so the last note describes it.
    async fn bounded_op<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let deadline = self.inner.config.deadline();
        let result = tokio::time::timeout(deadline, operation)
            .await
            .unwrap_or(Err(StoreError::Deadline(deadline)));
        if let Err(err) = &result {
            tracking::note_failure(err);
        }
        result
    }

    /// Sends `request` on a pooled connection. When it runs `script` and Redis does not have the
    /// script yet (a new or restarted server), loads it and sends `request` again.
    async fn query<T: FromRedisValue>(
        &self,
        request: &impl Request,
        script: Option<&LuaScript>,
    ) -> Result<T, StoreError> {
        let timeouts = &self.inner.config.pool_timeouts;
        // Back to the pool at once: other requests share the connection meanwhile.
        let mut connection = self.inner.pool.timeout_get(timeouts).await?.share();
        match (self.bounded(&mut connection, request).await, script) {
            (Err(StoreError::Redis(err)), Some(script))
                if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) =>
            {
                self.bounded::<()>(&mut connection, &script.load()).await?;
                self.bounded(&mut connection, request).await
            }
            (result, _) => result,
        }
    }

    /// One request on `connection`, bounded by the command timeout; the connection learns how
    /// it went, so the pool knows whether to trust it next time.
    async fn bounded<T: FromRedisValue>(
        &self,
        connection: &mut SharedConnection,
        request: &impl Request,
    ) -> Result<T, StoreError> {
        let timeout = self.inner.config.command_timeout;
        let in_flight = connection.in_flight();
        let result = tokio::time::timeout(timeout, request.send(connection)).await;
        in_flight.settle();
        match result {
            Ok(Ok(value)) => {
                connection.record(Outcome::Answered);
                Ok(value)
            }
            Ok(Err(err)) => {
                connection.record(Outcome::Failed(&err));
                Err(err.into())
            }
            Err(_) => {
                connection.record(Outcome::TimedOut);
                Err(StoreError::CommandTimeout(timeout))
            }
        }
    }

    /// One round trip: the hash and the sliding of its expiry, pipelined. The absolute lifetime
    /// is checked here; a session past it costs one more round trip, to delete it.
    async fn load_state(&self, id: &SessionKey) -> Result<Option<SessionState>, StoreError> {
        let Some(key) = self.redis_key(id) else {
            return Ok(None);
        };
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(&key);
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(millis(self.inner.config.idle_timeout))
            .ignore();
        let (fields,): (Vec<(Vec<u8>, Vec<u8>)>,) = self.query(&pipe, None).await?;
        let stored = state::decode(fields)?;
        let Some(created) = stored.created else {
            events::unknown(&key);
            if !stored.state.is_empty() {
                // Entries without a creation time: what a write that raced a logout left
                // behind. Never a session; the PEXPIRE above must not keep it alive.
                self.query::<()>(redis::cmd("DEL").arg(&key), None).await?;
            }
            return Ok(None);
        };
        if !self.within_lifetime(created) {
            events::expired(&key);
            self.query::<()>(redis::cmd("DEL").arg(&key), None).await?;
            return Ok(None);
        }
        tracking::remember(&key, &stored.state);
        Ok(Some(stored.state))
    }

    async fn save_state(&self, state: &SessionState) -> Result<SessionKey, StoreError> {
        if tracking::went_anonymous() {
            return Err(StoreError::WentAnonymous);
        }
        self.check_size(state)?;
        for _ in 0..SAVE_ATTEMPTS {
            let id = session_id::generate();
            let key = session_id::redis_key(&self.inner.config.key_prefix, &id);
            let mut cmd = self.script_call(&scripts::SAVE, &key);
            for (name, value) in state {
                cmd.arg(state::field_name(name).as_ref()).arg(value);
            }
            if self.query::<bool>(&cmd, Some(&scripts::SAVE)).await? {
                events::created(&key);
                return Ok(SessionKey::try_from(id).expect("a 43-byte id is a valid session key"));
            }
        }
        Err(StoreError::IdCollision)
    }

    async fn update_state(&self, id: &SessionKey, state: &SessionState) -> Result<(), StoreError> {
        let Some(key) = self.redis_key(id) else {
            return Ok(());
        };
        self.check_size(state)?;
        let written = match tracking::loaded(&key) {
            Some(loaded) => {
                let changes = Changes::between(&loaded, state);
                if changes.is_empty() {
                    return Ok(());
                }
                self.write_changes(&key, &changes).await?
            }
            None => self.replace_state(&key, state).await?,
        };
        if !written {
            events::update_dropped(&key);
        }
        Ok(())
    }

    /// Writes only what changed, with plain commands in one pipeline (a script costs Redis
    /// several times as much). Whether the session was still alive comes back with them; if
    /// it was not, the fields just written (a hash without a creation time, which no load
    /// accepts) are deleted again: the write never revives a session. (Should a logout land
    /// between the pipeline's `HGET` and `HSET`, such a hash stays behind, still unusable,
    /// until it expires or a load meets it and deletes it.)
    async fn write_changes(&self, key: &str, changes: &Changes<'_>) -> Result<bool, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET").arg(key).arg(state::CREATED);
        if !changes.set.is_empty() {
            pipe.cmd("HSET").arg(key);
            for (name, value) in &changes.set {
                pipe.arg(state::field_name(name).as_ref()).arg(*value);
            }
            pipe.ignore();
        }
        if !changes.removed.is_empty() {
            pipe.cmd("HDEL").arg(key);
            for name in &changes.removed {
                pipe.arg(state::field_name(name).as_ref());
            }
            pipe.ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(key)
            .arg(millis(self.inner.config.idle_timeout))
            .ignore();
        let (created,): (Option<u64>,) = self.query(&pipe, None).await?;
        if created.is_some_and(|created| self.within_lifetime(created)) {
            return Ok(true);
        }
        self.query::<()>(redis::cmd("DEL").arg(key), None).await?;
        Ok(false)
    }

    /// Makes `state` the whole state of a live session, atomically (a script).
    async fn replace_state(&self, key: &str, state: &SessionState) -> Result<bool, StoreError> {
        let mut cmd = self.script_call(&scripts::REPLACE, key);
        cmd.arg(state.len());
        for (name, value) in state {
            cmd.arg(state::field_name(name).as_ref()).arg(value);
        }
        self.query(&cmd, Some(&scripts::REPLACE)).await
    }

    fn within_lifetime(&self, created: u64) -> bool {
        now_millis().saturating_sub(created) < millis(self.inner.config.absolute_timeout)
    }

    async fn touch(&self, id: &SessionKey) -> Result<(), StoreError> {
        let Some(key) = self.redis_key(id) else {
            return Ok(());
        };
        if tracking::was_loaded(&key) {
            return Ok(());
        }
        // A plain PEXPIRE cannot create a key, so it cannot revive an ended session.
        let idle = millis(self.inner.config.idle_timeout);
        self.query::<()>(redis::cmd("PEXPIRE").arg(&key).arg(idle), None)
            .await?;
        Ok(())
    }

    async fn delete_state(&self, id: &SessionKey) -> Result<(), StoreError> {
        let Some(key) = self.redis_key(id) else {
            return Ok(());
        };
        let removed: u64 = self.query(redis::cmd("DEL").arg(&key), None).await?;
        if removed > 0 {
            events::deleted(&key);
        }
        Ok(())
    }
}

/// The store's idle timeout and absolute lifetime govern the state's life in Redis; the `ttl`
/// actix-session passes (its `session_ttl`) is left to the cookie.
impl SessionStore for RedisSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        match self.bounded_op(self.load_state(session_key)).await {
            Err(err)
                if err.is_unavailable()
                    && self.inner.config.when_unavailable == WhenUnavailable::Anonymous
                    && tracking::may_go_anonymous() =>
            {
                tracing::warn!(error = %err, "Redis unavailable: the request goes on without its session");
                tracking::note_anonymous();
                Ok(None)
            }
            result => Ok(result?),
        }
    }

    async fn save(
        &self,
        session_state: SessionState,
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        Ok(self.bounded_op(self.save_state(&session_state)).await?)
    }

    /// Writes nothing when the session ended in the meantime, and hands back the same key: the
    /// client keeps a cookie that leads nowhere, so it has no session, as after the logout.
    async fn update(
        &self,
        session_key: SessionKey,
        session_state: SessionState,
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        self.bounded_op(self.update_state(&session_key, &session_state))
            .await?;
        Ok(session_key)
    }

    /// Costs no round trip behind [`TrackChanges`](crate::TrackChanges), where the request's
    /// `load` slid the expiry already; otherwise one `PEXPIRE`.
    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        _ttl: &CookieDuration,
    ) -> anyhow::Result<()> {
        Ok(self.bounded_op(self.touch(session_key)).await?)
    }

    async fn delete(&self, session_key: &SessionKey) -> anyhow::Result<()> {
        Ok(self.bounded_op(self.delete_state(session_key)).await?)
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the epoch, by this machine's clock.
fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

/// What one round trip to Redis carries: a command or a pipeline.
trait Request {
    fn send<T: FromRedisValue>(
        &self,
        connection: &mut SharedConnection,
    ) -> impl Future<Output = RedisResult<T>>;
}

impl Request for Cmd {
    fn send<T: FromRedisValue>(
        &self,
        connection: &mut SharedConnection,
    ) -> impl Future<Output = RedisResult<T>> {
        self.query_async(connection)
    }
}

impl Request for Pipeline {
    fn send<T: FromRedisValue>(
        &self,
        connection: &mut SharedConnection,
    ) -> impl Future<Output = RedisResult<T>> {
        self.query_async(connection)
    }
}

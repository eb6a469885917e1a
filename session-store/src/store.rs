//! [`RedisSessionStore`]: actix-session's `SessionStore` on Redis. The session rules live here
//! (what each operation reads and writes, lifetimes, the size limit); how a request reaches
//! Redis lives in [`backend`](crate::backend).

use std::{future::Future, sync::Arc};

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use redis::{Cmd, FromRedisValue};
use tracing::Level;

use crate::{
    StoreError,
    backend::Backend,
    backend::batch::Batch,
    backend::pool::Pool,
    config::{Config, RedisSessionStoreBuilder, WhenUnavailable},
    features::events::{Publisher, SessionEvent, SessionEventKind},
    features::users::INDEXED,
    request::scope,
    session::changes::Changes,
    session::clock::{millis, now_millis},
    session::fields::{self, SessionState},
    session::key::RedisKey,
    session::scripts::{self, LuaScript},
    session::session_id::{self, IdleClass},
    telemetry::failure_log,
    telemetry::instruments::{self, Instruments, Operation, Outcome},
    telemetry::log,
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
    backend: Backend,
    config: Config,
    publisher: Option<Publisher>,
    instruments: Instruments,
}

impl RedisSessionStore {
    /// A store with the default settings on an existing pool (built with `Runtime::Tokio1`).
    pub fn new(pool: Pool) -> Self {
        Self::builder()
            .build_with_pool(pool)
            .expect("the default settings are valid")
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
        self.inner.backend.pool()
    }

    /// Checks that Redis answers a `PING` through the pool, within the store's timeouts: the
    /// probe for a health endpoint. Its failure is not the request's: a handler that calls it
    /// behind [`TrackChanges`](crate::TrackChanges) chooses its own answer.
    ///
    /// # Errors
    /// The [`StoreError`] that a session operation would meet right now.
    pub async fn health_check(&self) -> Result<(), StoreError> {
        let backend = &self.inner.backend;
        backend
            .within_deadline(backend.query::<()>(&redis::cmd("PING")))
            .await
    }

    pub(crate) fn from_parts(pool: Pool, config: Config) -> Self {
        let backend = Backend::new(pool, &config);
        let publisher = config.publish_events.then(|| Publisher {
            channel: Publisher::channel(&config.key_prefix),
            instance: config.instance_label.clone(),
        });
        let instruments = Instruments::new(config.metrics_label());
        Self {
            inner: Arc::new(Inner {
                backend,
                config,
                publisher,
                instruments,
            }),
        }
    }

    /// Where and as whom the store publishes its events, when it does.
    pub(crate) fn publisher(&self) -> Option<&Publisher> {
        self.inner.publisher.as_ref()
    }

    /// The channel and message that announce an event about the session at `key`, when the
    /// store publishes events: arguments of the script that makes the write.
    fn announce(
        &self,
        event: SessionEventKind,
        key: &RedisKey,
        user: Option<&str>,
        previous: Option<&RedisKey>,
    ) -> Option<(String, String)> {
        let publisher = self.publisher()?;
        let mut event = SessionEvent::new(event, key, user);
        event.previous = previous.map(|previous| previous.reference().to_owned());
        Some((publisher.channel.clone(), publisher.message(event)))
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Runs one session operation within the store's deadline, in a span of its own and
    /// counted in its metrics, and tells the request's scope how it failed, if it did (which
    /// [`TrackChanges`](crate::TrackChanges) answers with a `503` or a `413`). `outcome` says
    /// how an operation that did not fail ended.
    ///
    /// The operation goes on the heap first: each layer around it (deadline, span, metrics)
    /// would otherwise hold a copy of it, and moving those kilobytes cost more CPU than the
    /// allocation.
    fn session_op<T>(
        &self,
        operation: Operation,
        work: impl Future<Output = Result<T, StoreError>>,
        outcome: impl FnOnce(&T) -> Outcome,
    ) -> impl Future<Output = Result<T, StoreError>> {
        let work = Box::pin(work);
        async move {
            let backend = &self.inner.backend;
            let work = backend.within_deadline(work);
            let result = self
                .inner
                .instruments
                .observe(operation, backend.pool(), work, outcome)
                .await;
            if let Err(err) = &result {
                scope::note_failure(err);
            }
            result
        }
    }

    /// The store's metrics.
    pub(crate) fn instruments(&self) -> &Instruments {
        &self.inner.instruments
    }

    /// The Redis key and idle class of a session key, or `None` when the key is not of our
    /// shape, in which case it must not reach Redis at all.
    fn redis_key(&self, session_key: &SessionKey) -> Option<(RedisKey, IdleClass)> {
        let Some((id, class)) = session_id::parse(session_key.as_ref()) else {
            log::invalid_id(session_key.as_ref().len());
            return None;
        };
        let key = scope::key_loaded_as(session_key.as_ref())
            .unwrap_or_else(|| RedisKey::for_id(&self.config().key_prefix, id));
        instruments::session(key.reference());
        Some((key, class))
    }

    /// The idle class of a session holding `state`: anonymous when the store names a user
    /// entry and `state` lacks it.
    fn class_of(&self, state: &SessionState) -> IdleClass {
        match &self.config().user_entry {
            Some(user) if !state.contains_key(user) => IdleClass::Anonymous,
            _ => IdleClass::Normal,
        }
    }

    /// How long a session of `class` lives without being used, in milliseconds.
    fn idle_millis(&self, class: IdleClass) -> u64 {
        let config = self.config();
        millis(match class {
            IdleClass::Normal => config.idle_timeout,
            IdleClass::Anonymous => config.anonymous_idle_timeout.min(config.idle_timeout),
        })
    }

    /// Whether a renewal from `loaded` to `renewed` changed who the session belongs to.
    fn user_changed(&self, loaded: &SessionState, renewed: &SessionState) -> bool {
        self.config()
            .user_entry
            .as_ref()
            .is_some_and(|user| loaded.get(user) != renewed.get(user))
    }

    /// The creation times of live sessions, now: after the first bound (exclusive) and no
    /// later than the second, milliseconds since the epoch.
    fn born_between(&self) -> (u64, u64) {
        let now = now_millis();
        (
            now.saturating_sub(millis(self.config().absolute_timeout)),
            now.saturating_add(millis(self.config().clock_skew_tolerance)),
        )
    }

    pub(crate) fn within_lifetime(&self, created: u64) -> bool {
        let (after, by) = self.born_between();
        after < created && created <= by
    }

    /// Runs `script` on `key` with the common head of arguments (see `lua/prelude.lua`): the
    /// idle timeout of `class`, the bounds of live creation times, the creation time of a new
    /// session; then those `args` appends.
    async fn run_script<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        key: &RedisKey,
        head: (IdleClass, u64),
        args: impl Fn(&mut Cmd),
    ) -> Result<T, StoreError> {
        let (class, created) = head;
        let idle = self.idle_millis(class);
        let (born_after, born_by) = self.born_between();
        self.inner
            .backend
            .run_script(script, key, |cmd| {
                cmd.arg(idle).arg(born_after).arg(born_by).arg(created);
                args(cmd);
            })
            .await
    }

    /// Refuses a state over the size limit; counts the size of one to be written.
    fn check_size(&self, state: &SessionState) -> Result<(), StoreError> {
        let size = fields::size(state);
        let limit = self.config().max_state_size;
        if size > limit {
            return Err(StoreError::StateTooLarge { size, limit });
        }
        self.inner.instruments.state_bytes(size);
        Ok(())
    }

    /// A plain `DEL` of `key`; how many keys it removed.
    async fn delete_key(&self, key: &RedisKey) -> Result<u64, StoreError> {
        self.inner.backend.query(redis::cmd("DEL").arg(key)).await
    }

    /// One round trip: the hash and the sliding of its expiry, pipelined. The absolute lifetime
    /// is checked here; a session out of it costs one more round trip, to delete it.
    async fn load_state(
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
        let fields = match self.inner.backend.query(&pipe).await {
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
        if !self.within_lifetime(created) {
            self.end_expired(&key, self.user_in(&stored.state)).await?;
            return Ok(None);
        }
        scope::remember(session_key.as_ref(), &key, &stored.state, created);
        Ok(Some(stored.state))
    }

    /// Creates a session under a fresh id. After a load in the same request this is a renewal
    /// (actix-session deleted the old id just before): the new session keeps the old one's
    /// creation time, so renewing never escapes the absolute lifetime, unless the renewal
    /// changed who the session belongs to (a login starts a new lifetime). A renewal whose
    /// delete found the old session already gone creates nothing, unless it is a login: one
    /// session never becomes two, and a logout is never undone.
    async fn save_state(&self, state: &SessionState) -> Result<SessionKey, StoreError> {
        if scope::went_anonymous() {
            return Err(StoreError::WentAnonymous);
        }
        self.check_size(state)?;
        let mut renewed = scope::take_renewed();
        // A renewal whose session ended meanwhile (a logout, another renewal) stands for a new
        // session only when it is a login (the user changed): what ended was the old
        // session, not the new authentication. Any other must not bring it back: the client
        // gets a key that leads nowhere.
        if let Some(ended) = renewed.take_if(|renewed| renewed.ended_elsewhere)
            && !self.user_changed(&ended.state, state)
        {
            log::update_dropped(&ended.key);
            return Ok(session_id::session_key(
                &session_id::generate(),
                IdleClass::Normal,
            ));
        }
        let previous = renewed.as_ref().map(|renewed| renewed.key.clone());
        let created = renewed
            .filter(|renewed| !self.user_changed(&renewed.state, state))
            .map_or_else(now_millis, |renewed| renewed.created);
        let class = self.class_of(state);
        let user = self.user_in(state);
        let event = match previous {
            Some(_) => SessionEventKind::Renewed,
            None => SessionEventKind::Created,
        };
        for _ in 0..SAVE_ATTEMPTS {
            let id = session_id::generate();
            let key = RedisKey::for_id(&self.config().key_prefix, &id);
            if let Some(user) = user {
                // Before the session exists: a failure in between leaves an entry that the
                // next read of the index prunes, never a session missing from it.
                self.index_add(user, &key, created).await?;
            }
            let (channel, message) = self
                .announce(event, &key, user, previous.as_ref())
                .unwrap_or_default();
            let entries = |cmd: &mut Cmd| {
                cmd.arg(&channel).arg(&message);
                append_entries(cmd, state);
                if user.is_some() {
                    cmd.arg(INDEXED).arg(1);
                }
            };
            let saved: bool = self
                .run_script(&scripts::SAVE, &key, (class, created), entries)
                .await?;
            if saved {
                log::created(&key);
                return Ok(session_id::session_key(&id, class));
            }
        }
        Err(StoreError::IdCollision)
    }

    /// Writes `state` and hands back the session key for it: the same one, unless the write
    /// moved the session to the other idle class (it gained or lost its user); and whether the
    /// write was dropped, the session having ended meanwhile.
    async fn update_state(
        &self,
        session_key: SessionKey,
        state: &SessionState,
    ) -> Result<(SessionKey, bool), StoreError> {
        let Some((key, class)) = self.redis_key(&session_key) else {
            return Ok((session_key, false));
        };
        self.check_size(state)?;
        let new_class = self.class_of(state);
        let written = match scope::take_loaded(&key) {
            Some(loaded) => {
                let changes = Changes::between(&loaded.state, state);
                if changes.is_empty() {
                    return Ok((session_key, false));
                }
                self.write_tracked(&key, &loaded, state, &changes, new_class)
                    .await?
            }
            None => self.replace_state(&key, state, new_class).await?,
        };
        if !written {
            log::update_dropped(&key);
            return Ok((session_key, true));
        }
        if new_class == class {
            return Ok((session_key, false));
        }
        let (id, _) = session_id::parse(session_key.as_ref()).expect("parsed above");
        Ok((session_id::session_key(id, new_class), false))
    }

    /// Writes what a request changed, and keeps the user index in step: a new user's entry is
    /// added before the write, a former user's removed after it, and a session with a user
    /// that lacks its index mark is indexed again (see [`index`](crate::features::users)).
    async fn write_tracked(
        &self,
        key: &RedisKey,
        loaded: &scope::Loaded,
        state: &SessionState,
        changes: &Changes<'_>,
        class: IdleClass,
    ) -> Result<bool, StoreError> {
        let (before, after) = (self.user_in(&loaded.state), self.user_in(state));
        let joins = after.filter(|user| Some(*user) != before);
        if let Some(user) = joins {
            self.index_add(user, key, loaded.created).await?;
        }
        let mark = match (joins, after) {
            (Some(_), _) => Some(true),
            (None, None) if before.is_some() => Some(false),
            _ => None,
        };
        let (written, indexed) = self
            .write_changes(key, changes, class, mark, before)
            .await?;
        if let Some(user) = before.filter(|user| Some(*user) != after) {
            self.index_remove(user, key).await;
        }
        if let (true, false, Some(user), None) = (written, indexed, after, joins) {
            self.index_add(user, key, loaded.created).await?;
            self.inner
                .backend
                .query::<()>(redis::cmd("HSET").arg(key).arg(INDEXED).arg(1))
                .await?;
        }
        Ok(written)
    }

    /// Writes only what changed, with plain commands in one pipeline (a script costs Redis
    /// several times as much), and the index mark when `mark` says (set, or cleared). Whether
    /// the session was still alive, and whether it was marked as indexed, come back with them;
    /// if it was not alive, the fields just written (a hash without a creation time, which no
    /// load accepts) are deleted again: the write never revives a session. (Should a logout
    /// land between the pipeline's `HMGET` and `HSET`, such a hash stays behind, still
    /// unusable, until it expires or a load meets it and deletes it.) A session found past its
    /// absolute lifetime ends as expired, announced with `user`, its user before the write.
    async fn write_changes(
        &self,
        key: &RedisKey,
        changes: &Changes<'_>,
        class: IdleClass,
        mark: Option<bool>,
        user: Option<&str>,
    ) -> Result<(bool, bool), StoreError> {
        let mut pipe = Batch::new();
        pipe.cmd("HMGET").arg(key).arg(fields::CREATED).arg(INDEXED);
        if !changes.set.is_empty() || mark == Some(true) {
            pipe.cmd("HSET").arg(key);
            for (name, value) in &changes.set {
                pipe.arg(fields::field_name(name).as_ref()).arg(*value);
            }
            if mark == Some(true) {
                pipe.arg(INDEXED).arg(1);
            }
            pipe.ignore();
        }
        if !changes.removed.is_empty() || mark == Some(false) {
            pipe.cmd("HDEL").arg(key);
            for name in &changes.removed {
                pipe.arg(fields::field_name(name).as_ref());
            }
            if mark == Some(false) {
                pipe.arg(INDEXED);
            }
            pipe.ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(key)
            .arg(self.idle_millis(class))
            .ignore();
        let ((created, indexed),): ((Option<u64>, Option<u8>),) =
            self.inner.backend.write(pipe).await?;
        match created {
            Some(created) if self.within_lifetime(created) => return Ok((true, indexed.is_some())),
            Some(_) => self.end_expired(key, user).await?,
            None => {
                self.delete_key(key).await?;
            }
        }
        Ok((false, false))
    }

    /// Deletes the session at `key`, found past its absolute lifetime, and announces its
    /// expiry (with `user`, its user) when the store publishes events.
    async fn end_expired(&self, key: &RedisKey, user: Option<&str>) -> Result<(), StoreError> {
        log::expired(key);
        let announcement = self.announce(SessionEventKind::Expired, key, user, None);
        self.delete_announced(key, announcement).await?;
        Ok(())
    }

    /// Makes `state` the whole state of a live session, atomically (a script): the write of
    /// a request outside [`TrackChanges`](crate::TrackChanges), which does not know what the
    /// request loaded. The index is kept as a tracked write keeps it: a user in `state` is
    /// added before the write (so no session of a user is ever missing from the index, at the
    /// price of a round trip), a former user's entry removed after it.
    async fn replace_state(
        &self,
        key: &RedisKey,
        state: &SessionState,
        class: IdleClass,
    ) -> Result<bool, StoreError> {
        let user = self.user_in(state);
        let now = now_millis();
        if let Some(user) = user {
            // The creation time is not known here: the entry's score may outlast the
            // session, which costs a stale entry its place in the index a little longer.
            self.index_add(user, key, now).await?;
        }
        let (channel, expired) = self
            .announce(SessionEventKind::Expired, key, user, None)
            .unwrap_or_default();
        let user_field = self
            .config()
            .user_entry
            .as_deref()
            .map(fields::field_name)
            .unwrap_or_default();
        let entries = |cmd: &mut Cmd| {
            cmd.arg(&channel)
                .arg(&expired)
                .arg(user_field.as_ref())
                .arg(state.len() + usize::from(user.is_some()));
            append_entries(cmd, state);
            if user.is_some() {
                cmd.arg(INDEXED).arg(1);
            }
        };
        let replaced: Option<(u8, Option<String>)> = self
            .run_script(&scripts::REPLACE, key, (class, now), entries)
            .await?;
        let Some((_, before)) = replaced else {
            return Ok(false);
        };
        if let Some(before) = before.filter(|before| Some(before.as_str()) != user) {
            self.index_remove(&before, key).await;
        }
        Ok(true)
    }

    async fn touch(&self, session_key: &SessionKey) -> Result<(), StoreError> {
        let Some((key, class)) = self.redis_key(session_key) else {
            return Ok(());
        };
        // A plain PEXPIRE cannot create a key, so it cannot revive an ended session.
        let idle = self.idle_millis(class);
        self.inner
            .backend
            .query::<()>(redis::cmd("PEXPIRE").arg(&key).arg(idle))
            .await
    }

    /// Deletes the session at `key`, as a write: a plain `DEL`, or a script that announces it
    /// when there is an announcement to make. How many keys it deleted.
    async fn delete_announced(
        &self,
        key: &RedisKey,
        announcement: Option<(String, String)>,
    ) -> Result<u64, StoreError> {
        let backend = &self.inner.backend;
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

    async fn delete_state(&self, session_key: &SessionKey) -> Result<(), StoreError> {
        let Some((key, _)) = self.redis_key(session_key) else {
            return Ok(());
        };
        let user = self
            .config()
            .user_entry
            .as_deref()
            .and_then(|name| scope::loaded_entry(&key, name));
        let announcement = self.announce(SessionEventKind::Deleted, &key, user.as_deref(), None);
        let removed = self.delete_announced(&key, announcement).await? > 0;
        scope::note_deleted(&key, removed);
        if removed {
            log::deleted(&key);
        }
        if let Some(user) = user {
            self.index_remove(&user, &key).await;
        }
        Ok(())
    }
}

/// The store's idle timeout and absolute lifetime govern the state's life in Redis; the `ttl`
/// actix-session passes (its `session_ttl`) is left to the cookie.
impl SessionStore for RedisSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        let found = |state: &Option<SessionState>| {
            if state.is_some() {
                Outcome::Ok
            } else {
                Outcome::NotFound
            }
        };
        match self
            .session_op(Operation::Load, self.load_state(session_key), found)
            .await
        {
            Err(err)
                if err.is_unavailable()
                    && self.config().when_unavailable == WhenUnavailable::Anonymous
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
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        let saved = self.save_state(&session_state);
        Ok(self
            .session_op(Operation::Save, saved, |_| Outcome::Ok)
            .await?)
    }

    /// Writes nothing when the session ended in the meantime, and hands back the same key: the
    /// client keeps a cookie that leads nowhere, so it has no session, as after the logout.
    async fn update(
        &self,
        session_key: SessionKey,
        session_state: SessionState,
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let updated = self.update_state(session_key, &session_state);
        let dropped = |(_, dropped): &(SessionKey, bool)| {
            if *dropped {
                Outcome::Dropped
            } else {
                Outcome::Ok
            }
        };
        let (session_key, _) = self.session_op(Operation::Update, updated, dropped).await?;
        Ok(session_key)
    }

    /// Costs nothing behind [`TrackChanges`](crate::TrackChanges), where the request's `load`
    /// slid the expiry already (nor is it counted in the metrics, as it does nothing);
    /// otherwise one `PEXPIRE`.
    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        _ttl: &CookieDuration,
    ) -> anyhow::Result<()> {
        if scope::was_loaded(session_key.as_ref()) {
            return Ok(());
        }
        let touched = self.touch(session_key);
        Ok(self
            .session_op(Operation::UpdateTtl, touched, |()| Outcome::Ok)
            .await?)
    }

    async fn delete(&self, session_key: &SessionKey) -> anyhow::Result<()> {
        let deleted = self.delete_state(session_key);
        Ok(self
            .session_op(Operation::Delete, deleted, |()| Outcome::Ok)
            .await?)
    }
}

/// Appends the hash fields and values of `state` to a script call.
fn append_entries(cmd: &mut Cmd, state: &SessionState) {
    for (name, value) in state {
        cmd.arg(fields::field_name(name).as_ref()).arg(value);
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

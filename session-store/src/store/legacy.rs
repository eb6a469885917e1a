//! Sessions of actix-session's own `RedisSessionStore` (0.11), for a switch from it with nobody
//! logged out ([`LegacySessions`](crate::config::LegacySessions)).
//!
//! The old store keeps a session as a string at `key_function(session key)` (the session key
//! itself by default): a JSON object of entry name to entry value (JSON text), written with
//! `SET NX/XX EX ttl`, where `ttl` is the state TTL actix-session passes every store. Its
//! session keys are 64 alphanumerics, a shape this store accepts as its own.
//!
//! - **Interoperating**, a session of that shape lives where and as the old store keeps it, by
//!   its rules (its TTL, set on writes and by `update_ttl`), so that old and new instances
//!   serve it alike; sessions created now are made that way too. What this store adds: a
//!   write changes only the entries the request changed, and never brings back a session
//!   that ended (the old store's `update` saves it again under a new key). The users' index,
//!   revocation and events start with the move.
//! - **Migrating**, a session of that shape is read from this store's layout, under the hash
//!   of the same id; when it is not there, it is moved there from the old key: created anew
//!   (its absolute lifetime starts now: the old store kept no creation time), its user
//!   indexed, then the old key deleted. The two keys are in different slots on a cluster, so
//!   the move is several writes; a mark on the new hash says the old key may still be there,
//!   and the next request after a failure in between finishes the move (see
//!   [`finish_move`](RedisSessionStore::finish_move)).

use actix_session::storage::SessionKey;
use actix_web::cookie::time::Duration as CookieDuration;
use redis::Cmd;

use crate::{
    backend::batch::Batch,
    config::LegacyStep,
    error::StoreError,
    features::users::{INDEXED, Users},
    request::scope,
    session::{
        changes::Changes,
        clock::{millis, now_millis},
        fields::{self, SessionState},
        key::RedisKey,
        scripts,
        session_id::{self, IdleClass},
    },
    store::{RedisSessionStore, read::Hash, rules::append_entries},
    telemetry::log,
};

/// Where actix-session's own store keeps the session of a legacy-shaped session key, and the
/// step the store is at.
pub(super) struct OldSession {
    pub(super) step: LegacyStep,
    /// The old store's Redis key. It holds the session id itself under the default key
    /// function: it goes to Redis and nowhere else (logs name the new key's reference).
    key: String,
}

/// How many fresh ids a save in the old layout tries before it gives up.
const SAVE_ATTEMPTS: usize = 3;

impl RedisSessionStore {
    /// The old session behind `session_key`, when the store has the legacy setting and the key
    /// has the old store's shape.
    pub(super) fn old_session(&self, session_key: &SessionKey) -> Option<OldSession> {
        let legacy = self.handle.config().legacy.as_ref()?;
        let (id, _) = session_id::parse(session_key.as_ref())?;
        session_id::is_legacy(id).then(|| OldSession {
            step: legacy.step,
            key: (legacy.key_function)(id),
        })
    }

    /// The old session behind `session_key` while the store interoperates: one that lives by
    /// the old store's rules.
    pub(super) fn interoperating(&self, session_key: &SessionKey) -> Option<OldSession> {
        self.old_session(session_key)
            .filter(|old| old.step == LegacyStep::Interoperate)
    }

    /// Whether new sessions are made in the old store's layout.
    pub(super) fn creates_old_sessions(&self) -> bool {
        self.handle
            .config()
            .legacy
            .as_ref()
            .is_some_and(|legacy| legacy.step == LegacyStep::Interoperate)
    }

    /// Reads an old session: one `GET`. It slides nothing, as the old store's `load`. A
    /// session not there may have been moved to this store's layout by a migrating instance
    /// (instances are restarted into the migrating step one at a time): it is read there, one
    /// round trip more.
    pub(super) async fn load_old(
        &self,
        session_key: &SessionKey,
        key: &RedisKey,
        class: IdleClass,
        old: &OldSession,
    ) -> Result<Option<SessionState>, StoreError> {
        if let Some(state) = self.read_old(key, old).await? {
            scope::remember(session_key.as_ref(), key, &state, now_millis(), Vec::new());
            scope::note_old_layout();
            return Ok(Some(state));
        }
        let seal = self.seal(session_key, key);
        Ok(match self.read_hash(key, class, &seal, None).await? {
            Hash::Found(state, created, rewrite, _) => {
                scope::remember(session_key.as_ref(), key, &state, created, rewrite);
                Some(state)
            }
            Hash::Missing | Hash::Ended => None,
        })
    }

    /// The state at the old key, in the old store's format; a value of another kind or format
    /// is deleted, as corrupt state of this store's own.
    async fn read_old(
        &self,
        key: &RedisKey,
        old: &OldSession,
    ) -> Result<Option<SessionState>, StoreError> {
        let get = redis::cmd("GET").arg(&old.key).clone();
        let value: Option<Vec<u8>> = match self.handle.backend().query(&get).await {
            Err(StoreError::Redis(err)) if err.code() == Some("WRONGTYPE") => Some(Vec::new()),
            result => result?,
        };
        let Some(value) = value else {
            return Ok(None);
        };
        match serde_json::from_slice::<SessionState>(&value) {
            Ok(state) => Ok(Some(state)),
            Err(_) => {
                log::corrupt(key);
                self.delete_old(old).await?;
                Ok(None)
            }
        }
    }

    /// Writes an old session: what the request changed, in one script; or, outside
    /// [`TrackChanges`](crate::request::middleware::TrackChanges), the whole state (`SET XX`).
    /// Whether it wrote: nothing is written to a session that ended.
    pub(super) async fn update_old(
        &self,
        key: &RedisKey,
        old: &OldSession,
        state: &SessionState,
        ttl: &CookieDuration,
    ) -> Result<bool, StoreError> {
        self.check_size(state)?;
        let seconds = ttl_seconds(ttl);
        let Some(loaded) = scope::take_loaded(key) else {
            let mut pipe = Batch::new();
            pipe.cmd("SET")
                .arg(&old.key)
                .arg(encode(state))
                .arg("XX")
                .arg("EX")
                .arg(seconds);
            let (written,): (Option<()>,) = self.handle.backend().write(pipe).await?;
            return Ok(written.is_some());
        };
        let changes = Changes::between(&loaded.state, state);
        if changes.is_empty() {
            return Ok(true);
        }
        let args = |cmd: &mut Cmd| {
            cmd.arg(seconds).arg(changes.set.len());
            for (name, value) in &changes.set {
                cmd.arg(*name).arg(*value);
            }
            for name in &changes.removed {
                cmd.arg(*name);
            }
        };
        let written: u8 = self
            .handle
            .backend()
            .run_script(&scripts::LEGACY_UPDATE, &old.key, args)
            .await?;
        Ok(written == 1)
    }

    /// Creates a session in the old store's layout, as the old store does (`SET NX EX`), under
    /// a fresh id of its shape.
    pub(super) async fn save_old(
        &self,
        state: &SessionState,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, StoreError> {
        let legacy = self
            .handle
            .config()
            .legacy
            .as_ref()
            .expect("interoperating");
        let value = encode(state);
        for _ in 0..SAVE_ATTEMPTS {
            let id = session_id::generate_legacy();
            let mut pipe = Batch::new();
            pipe.cmd("SET")
                .arg((legacy.key_function)(&id))
                .arg(&value)
                .arg("NX")
                .arg("EX")
                .arg(ttl_seconds(ttl));
            let (saved,): (Option<()>,) = self.handle.backend().write(pipe).await?;
            if saved.is_some() {
                log::created(&RedisKey::for_id(&self.handle.config().key_prefix, &id));
                return Ok(session_id::session_key(&id, IdleClass::Normal));
            }
        }
        Err(StoreError::IdCollision)
    }

    /// Slides an old session's TTL, as the old store's `update_ttl`; whether it was there.
    pub(super) async fn touch_old(
        &self,
        old: &OldSession,
        ttl: &CookieDuration,
    ) -> Result<bool, StoreError> {
        let expire = redis::cmd("EXPIRE")
            .arg(&old.key)
            .arg(ttl_seconds(ttl))
            .clone();
        let slid: u8 = self.handle.backend().query(&expire).await?;
        Ok(slid == 1)
    }

    /// Deletes the old key; whether it was there.
    pub(super) async fn delete_old(&self, old: &OldSession) -> Result<bool, StoreError> {
        let mut pipe = Batch::new();
        pipe.cmd("DEL").arg(&old.key);
        let (removed,): (u64,) = self.handle.backend().write(pipe).await?;
        Ok(removed > 0)
    }

    /// Moves the session at the old key to `key`, on its first request while migrating: the
    /// session as moved, or `None` when there is none to move (or it ended during the move).
    pub(super) async fn migrate(
        &self,
        session_key: &SessionKey,
        key: &RedisKey,
        class: IdleClass,
        old: &OldSession,
    ) -> Result<Option<SessionState>, StoreError> {
        let Some(state) = self.read_old(key, old).await? else {
            return Ok(None);
        };
        let created = now_millis();
        let user = self.handle.user_in(&state);
        if let Some(user) = user {
            // Before the session exists, as for any new session.
            Users::new(&self.handle).add(user, key, created).await?;
        }
        let seal = self.seal(session_key, key);
        let entries = |cmd: &mut Cmd| {
            // No announcement: the session is not new to its user.
            cmd.arg("").arg("");
            append_entries(cmd, &state, &seal);
            if user.is_some() {
                cmd.arg(INDEXED).arg(1);
            }
            cmd.arg(fields::MIGRATING).arg(created);
        };
        let moved: bool = self
            .run_script(&scripts::SAVE, key, (class, created), entries)
            .await?;
        if !moved {
            // Another request of the session moved it first: take what that one made.
            return Ok(match self.read_hash(key, class, &seal, None).await? {
                Hash::Found(state, created, rewrite, _) => {
                    scope::remember(session_key.as_ref(), key, &state, created, rewrite);
                    Some(state)
                }
                Hash::Missing | Hash::Ended => None,
            });
        }
        if !self.finish_move(key, old, user).await? {
            return Ok(None);
        }
        log::migrated(key);
        scope::remember(session_key.as_ref(), key, &state, created, Vec::new());
        Ok(Some(state))
    }

    /// Finishes the move of a session to `key`, begun at `began` and found unfinished by a
    /// later read: whether the session lives on. A move younger than an operation can take
    /// (plus the clock skew between instances) is under way, and left to finish.
    pub(super) async fn settle_move(
        &self,
        key: &RedisKey,
        old: &OldSession,
        began: u64,
        user: Option<&str>,
    ) -> Result<bool, StoreError> {
        let config = self.handle.config();
        let under_way = millis(config.deadline() + config.clock_skew_tolerance);
        if now_millis().saturating_sub(began) <= under_way {
            return Ok(true);
        }
        self.finish_move(key, old, user).await
    }

    /// The last writes of a move: deletes the old key, then the mark. When the old key was
    /// gone already, the session ended while it moved (a logout deletes the old key first,
    /// then the new one; or the old key expired): the new copy goes too, so nothing brings
    /// back a logout. Whether the session lives on.
    ///
    /// A failure after the new copy was made and before the mark is deleted leaves the mark,
    /// and the next read comes back here: the old key there means the move goes on, the old
    /// key gone means the session ends. (A failure between this `DEL` and the `HDEL` is the
    /// one case where that ends a session that did not end: it fails closed.)
    async fn finish_move(
        &self,
        key: &RedisKey,
        old: &OldSession,
        user: Option<&str>,
    ) -> Result<bool, StoreError> {
        if !self.delete_old(old).await? {
            self.delete_key(key).await?;
            if let Some(user) = user {
                Users::new(&self.handle).remove(user, key).await;
            }
            log::update_dropped(key);
            return Ok(false);
        }
        let mut pipe = Batch::new();
        pipe.cmd("HDEL").arg(key).arg(fields::MIGRATING);
        let (_,): (u64,) = self.handle.backend().write(pipe).await?;
        Ok(true)
    }
}

/// The old store's format: a JSON object of entry name to entry value.
fn encode(state: &SessionState) -> String {
    serde_json::to_string(state).expect("a map of strings always serializes")
}

/// The TTL the old store sets, in whole seconds, as it sends it (and at least one: `SET` and
/// `EXPIRE` refuse less).
fn ttl_seconds(ttl: &CookieDuration) -> i64 {
    ttl.whole_seconds().max(1)
}

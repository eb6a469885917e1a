//! Writing a session: creating one (a login, a renewal), writing what a request changed, or
//! replacing a whole state; each keeps the users' index in step.

use actix_session::storage::SessionKey;
use actix_web::cookie::time::Duration as CookieDuration;
use redis::Cmd;

use crate::{
    backend::batch::Batch,
    error::StoreError,
    features::events::SessionEventKind,
    features::users::{INDEXED, Users},
    request::scope,
    session::changes::Changes,
    session::clock::now_millis,
    session::fields::{self, SessionState},
    session::key::RedisKey,
    session::scripts,
    session::seal::Seal,
    session::session_id::{self, IdleClass},
    store::{RedisSessionStore, rules::append_entries},
    telemetry::log,
};

/// How many fresh ids `save` tries before it gives up. One is all a CSPRNG ever needs.
const SAVE_ATTEMPTS: usize = 3;

impl RedisSessionStore {
    /// Creates a session under a fresh id. After a load in the same request this is a renewal
    /// (actix-session deleted the old id just before): the new session keeps the old one's
    /// creation time, so renewing never escapes the absolute lifetime, unless the renewal
    /// changed who the session belongs to (a login starts a new lifetime). A renewal whose
    /// delete found the old session already gone creates nothing, unless it is a login: one
    /// session never becomes two, and a logout is never undone.
    ///
    /// While the store interoperates with actix-session's own store, the session is created
    /// as that store creates them, so that old instances can read it (see `legacy.rs`).
    pub(super) async fn save_state(
        &self,
        state: &SessionState,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, StoreError> {
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
        if self.creates_old_sessions() {
            return self.save_old(state, ttl).await;
        }
        let previous = renewed.as_ref().map(|renewed| renewed.key.clone());
        let created = renewed
            .filter(|renewed| !self.user_changed(&renewed.state, state))
            .map_or_else(now_millis, |renewed| renewed.created);
        let class = self.class_of(state);
        let user = self.handle.user_in(state);
        let event = match previous {
            Some(_) => SessionEventKind::Renewed,
            None => SessionEventKind::Created,
        };
        for _ in 0..SAVE_ATTEMPTS {
            let id = session_id::generate();
            let key = RedisKey::for_id(&self.handle.config().key_prefix, &id);
            if let Some(user) = user {
                // Before the session exists: a failure in between leaves an entry that the
                // next read of the index prunes, never a session missing from it.
                Users::new(&self.handle).add(user, &key, created).await?;
            }
            let (channel, message) = self
                .announce(event, &key, user, previous.as_ref())
                .unwrap_or_default();
            let seal = Seal::new(self.handle.config(), self.handle.opened(), &id, &key);
            let entries = |cmd: &mut Cmd| {
                cmd.arg(&channel).arg(&message);
                append_entries(cmd, state, &seal);
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
    /// write was dropped, the session having ended meanwhile. A session that lives by
    /// actix-session's own store's rules is written where that store keeps it.
    pub(super) async fn update_state(
        &self,
        session_key: SessionKey,
        state: &SessionState,
        ttl: &CookieDuration,
    ) -> Result<(SessionKey, bool), StoreError> {
        let Some((key, class)) = self.redis_key(&session_key) else {
            return Ok((session_key, false));
        };
        if let Some(old) = self.interoperating(&session_key) {
            // Unless this request read the session in this store's layout (a migrating
            // instance moved it), it is written where the old store keeps it; a write outside
            // TrackChanges that does not find it there tries this store's layout next.
            let layout = scope::loaded_in_old_layout(session_key.as_ref());
            if layout != Some(false) {
                let written = self.update_old(&key, &old, state, ttl).await?;
                if written || layout == Some(true) {
                    if !written {
                        log::update_dropped(&key);
                    }
                    return Ok((session_key, !written));
                }
            }
        }
        self.check_size(state)?;
        let new_class = self.class_of(state);
        let seal = self.seal(&session_key, &key);
        let written = match scope::take_loaded(&key) {
            Some(loaded) => {
                let mut changes = Changes::between(&loaded.state, state);
                if changes.is_empty() {
                    return Ok((session_key, false));
                }
                changes.rewrite(&loaded.rewrite, state);
                self.write_tracked(&seal, &loaded, state, &changes, new_class)
                    .await?
            }
            None => self.replace_state(&seal, state, new_class).await?,
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
    /// that lacks its index mark is indexed again (see [`users`](crate::features::users)).
    pub(super) async fn write_tracked(
        &self,
        seal: &Seal<'_>,
        loaded: &scope::Loaded,
        state: &SessionState,
        changes: &Changes<'_>,
        class: IdleClass,
    ) -> Result<bool, StoreError> {
        let key = seal.key();
        let (before, after) = (
            self.handle.user_in(&loaded.state),
            self.handle.user_in(state),
        );
        let joins = after.filter(|user| Some(*user) != before);
        if let Some(user) = joins {
            Users::new(&self.handle)
                .add(user, key, loaded.created)
                .await?;
        }
        let mark = match (joins, after) {
            (Some(_), _) => Some(true),
            (None, None) if before.is_some() => Some(false),
            _ => None,
        };
        let (written, indexed) = self
            .write_changes(seal, changes, class, mark, before)
            .await?;
        if let Some(user) = before.filter(|user| Some(*user) != after) {
            Users::new(&self.handle).remove(user, key).await;
        }
        if let (true, false, Some(user), None) = (written, indexed, after, joins) {
            Users::new(&self.handle)
                .add(user, key, loaded.created)
                .await?;
            self.handle
                .backend()
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
    pub(super) async fn write_changes(
        &self,
        seal: &Seal<'_>,
        changes: &Changes<'_>,
        class: IdleClass,
        mark: Option<bool>,
        user: Option<&str>,
    ) -> Result<(bool, bool), StoreError> {
        let key = seal.key();
        let mut pipe = Batch::new();
        pipe.cmd("HMGET").arg(key).arg(fields::CREATED).arg(INDEXED);
        if !changes.set.is_empty() || mark == Some(true) {
            pipe.cmd("HSET").arg(key);
            for (name, value) in &changes.set {
                pipe.arg(fields::field_name(name).as_ref())
                    .arg(seal.store(name, value).as_ref());
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
        // Also when the request's load slid the expiry already: should a logout land before
        // the HSET, this bounds the life of the hash the HSET leaves behind.
        pipe.cmd("PEXPIRE")
            .arg(key)
            .arg(self.idle_millis(class))
            .ignore();
        let ((created, indexed),): ((Option<u64>, Option<u8>),) =
            self.handle.backend().write(pipe).await?;
        match created {
            Some(created) if self.handle.within_lifetime(created) => {
                return Ok((true, indexed.is_some()));
            }
            Some(_) => self.end_expired(key, user).await?,
            None => {
                self.delete_key(key).await?;
            }
        }
        Ok((false, false))
    }

    /// Makes `state` the whole state of a live session, atomically (a script): the write of
    /// a request outside [`TrackChanges`](crate::request::middleware::TrackChanges), which does not know what the
    /// request loaded. The index is kept as a tracked write keeps it: a user in `state` is
    /// added before the write (so no session of a user is ever missing from the index, at the
    /// price of a round trip), a former user's entry removed after it.
    pub(super) async fn replace_state(
        &self,
        seal: &Seal<'_>,
        state: &SessionState,
        class: IdleClass,
    ) -> Result<bool, StoreError> {
        let key = seal.key();
        let user = self.handle.user_in(state);
        let now = now_millis();
        if let Some(user) = user {
            // The creation time is not known here: the entry's score may outlast the
            // session, which costs a stale entry its place in the index a little longer.
            Users::new(&self.handle).add(user, key, now).await?;
        }
        let (channel, expired) = self
            .announce(SessionEventKind::Expired, key, user, None)
            .unwrap_or_default();
        let user_field = self
            .handle
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
            append_entries(cmd, state, seal);
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
            Users::new(&self.handle).remove(&before, key).await;
        }
        Ok(true)
    }
}

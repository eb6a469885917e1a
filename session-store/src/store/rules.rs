//! The rules every session operation applies: which Redis key a cookie names (and which it
//! must never reach Redis as), idle classes and lifetimes, the size limit, and the head of
//! arguments every script takes.

use std::time::Duration;

use actix_session::storage::SessionKey;
use redis::{Cmd, FromRedisValue};

use crate::{
    error::StoreError,
    features::events::{SessionEvent, SessionEventKind},
    request::scope,
    session::clock::millis,
    session::fields::{self, SessionState},
    session::key::RedisKey,
    session::scripts::LuaScript,
    session::seal::{self, Seal},
    session::session_id::{self, IdleClass},
    store::RedisSessionStore,
    telemetry::{instruments, log},
};

impl RedisSessionStore {
    /// The Redis key and idle class of a session key, or `None` when the key is not of our
    /// shape, in which case it must not reach Redis at all.
    pub(super) fn redis_key(&self, session_key: &SessionKey) -> Option<(RedisKey, IdleClass)> {
        let Some((id, class)) = session_id::parse(session_key.as_ref()) else {
            log::invalid_id(session_key.as_ref().len());
            return None;
        };
        let key = scope::key_loaded_as(session_key.as_ref())
            .unwrap_or_else(|| RedisKey::for_id(&self.handle.config().key_prefix, id));
        instruments::session(key.reference());
        Some((key, class))
    }

    /// Drops this instance's near-cache copy of the session under `session_key`, and keeps
    /// reads in flight from putting one back: called before and after a write of it, so that
    /// no request here sees the session as it was before the write once the write is done
    /// (other instances hear of the write from Redis).
    pub(super) fn forget_copy(&self, session_key: &SessionKey) {
        let Some(near) = self.handle.near() else {
            return;
        };
        if let Some((id, _)) = session_id::parse(session_key.as_ref()) {
            let key = scope::key_loaded_as(session_key.as_ref())
                .unwrap_or_else(|| RedisKey::for_id(&self.handle.config().key_prefix, id));
            near.forget([key.as_str().as_bytes()]);
        }
    }

    /// The sealing of the entries of the session under `session_key` (already parsed by
    /// [`redis_key`](Self::redis_key) into `key`).
    pub(super) fn seal<'a>(&'a self, session_key: &'a SessionKey, key: &'a RedisKey) -> Seal<'a> {
        let (id, _) = session_id::parse(session_key.as_ref()).expect("a key redis_key parsed");
        Seal::new(self.handle.config(), self.handle.opened(), id, key)
    }

    /// The idle class of a session holding `state`: anonymous when the store names a user
    /// entry and `state` lacks it.
    pub(super) fn class_of(&self, state: &SessionState) -> IdleClass {
        match &self.handle.config().user_entry {
            Some(user) if !state.contains_key(user) => IdleClass::Anonymous,
            _ => IdleClass::Normal,
        }
    }

    /// The time to live a session of `class` gets at each slide of its expiry, in
    /// milliseconds: its idle timeout, and with the near cache the slide granularity on top.
    pub(super) fn idle_millis(&self, class: IdleClass) -> u64 {
        let idle = self.idle_timeout(class);
        millis(idle + self.handle.config().slide_granularity(idle))
    }

    /// How long a session of `class` lives without being used.
    pub(super) fn idle_timeout(&self, class: IdleClass) -> Duration {
        let config = self.handle.config();
        match class {
            IdleClass::Normal => config.idle_timeout,
            IdleClass::Anonymous => config.anonymous_idle_timeout.min(config.idle_timeout),
        }
    }

    /// Whether a renewal from `loaded` to `renewed` changed who the session belongs to.
    pub(super) fn user_changed(&self, loaded: &SessionState, renewed: &SessionState) -> bool {
        self.handle
            .config()
            .user_entry
            .as_ref()
            .is_some_and(|user| loaded.get(user) != renewed.get(user))
    }

    /// Runs `script` on `key` with the common head of arguments (see `session/lua/prelude.lua`): the
    /// idle timeout of `class`, the bounds of live creation times, the creation time of a new
    /// session; then those `args` appends.
    pub(super) async fn run_script<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        key: &RedisKey,
        head: (IdleClass, u64),
        args: impl Fn(&mut Cmd),
    ) -> Result<T, StoreError> {
        let (class, created) = head;
        let idle = self.idle_millis(class);
        let (born_after, born_by) = self.handle.born_between();
        self.handle
            .backend()
            .run_script(script, key, |cmd| {
                cmd.arg(idle).arg(born_after).arg(born_by).arg(created);
                args(cmd);
            })
            .await
    }

    /// Refuses a state over the size limit; counts the size of one to be written.
    pub(super) fn check_size(&self, state: &SessionState) -> Result<(), StoreError> {
        let size = seal::stored_size(self.handle.config(), state);
        let limit = self.handle.config().max_state_size;
        if size > limit {
            return Err(StoreError::StateTooLarge { size, limit });
        }
        self.handle.instruments().state_bytes(size);
        Ok(())
    }

    /// The channel and message that announce an event about the session at `key`, when the
    /// store publishes events: arguments of the script that makes the write.
    pub(super) fn announce(
        &self,
        event: SessionEventKind,
        key: &RedisKey,
        user: Option<&str>,
        previous: Option<&RedisKey>,
    ) -> Option<(String, String)> {
        let publisher = self.handle.publisher()?;
        let mut event = SessionEvent::new(event, key, user);
        event.previous = previous.map(|previous| previous.reference().to_owned());
        Some((publisher.channel.clone(), publisher.message(event)))
    }
}

/// Appends the hash fields and values of `state` to a script call.
pub(super) fn append_entries(cmd: &mut Cmd, state: &SessionState, seal: &Seal<'_>) {
    for (name, value) in state {
        cmd.arg(fields::field_name(name).as_ref())
            .arg(seal.store(name, value).as_ref());
    }
}

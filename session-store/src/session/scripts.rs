//! The Lua scripts for the writes that must be atomic: creating a session without overwriting
//! another, replacing a whole state, ending a session with its announcement, the users' index
//! and the login throttle's counters; and the near cache's read, which slides an expiry only
//! when it is due. (Other reads and the writes of changed entries need none: plain commands in
//! one pipeline cost Redis a fraction of a script call.)

use std::sync::LazyLock;

use redis::{Cmd, ToRedisArgs};

/// A Lua script on one key, sent by its SHA1 (`EVALSHA`), or whole (`EVAL`) to a Redis that
/// lacks it.
#[derive(Debug)]
pub(crate) struct LuaScript {
    code: &'static str,
    hash: String,
}

impl LuaScript {
    fn new(code: &'static str) -> Self {
        Self {
            code,
            hash: redis::Script::new(code).get_hash().to_owned(),
        }
    }

    /// `EVALSHA` of this script on `key`; the caller appends the arguments.
    pub(crate) fn evalsha(&self, key: &impl ToRedisArgs) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.hash).arg(1).arg(key);
        cmd
    }

    /// `EVAL` of this script's body on `key`; the caller appends the arguments.
    pub(crate) fn eval(&self, key: &impl ToRedisArgs) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(self.code).arg(1).arg(key);
        cmd
    }
}

macro_rules! session_script {
    ($file:literal) => {
        LazyLock::new(|| {
            LuaScript::new(concat!(
                include_str!("lua/prelude.lua"),
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

/// Creates a session, never overwriting one.
pub(crate) static SAVE: LazyLock<LuaScript> = session_script!("save.lua");

/// Replaces a live session's state; a session that is gone stays gone.
pub(crate) static REPLACE: LazyLock<LuaScript> = session_script!("replace.lua");

/// Reads a session for the near cache, sliding its expiry only when it is due.
pub(crate) static NEAR_READ: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/near_read.lua")));

/// Writes what a request changed into a session of actix-session's own store.
pub(crate) static LEGACY_UPDATE: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/legacy_update.lua")));

/// Deletes a session and announces it.
pub(crate) static DELETE: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/delete.lua")));

/// Deletes a session if it still belongs to a given user, and announces it.
pub(crate) static REVOKE: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/revoke.lua")));

/// Adds a session to its user's index and names the oldest sessions over the user's limit.
pub(crate) static INDEX_ADD: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/index_add.lua")));

/// Takes a login attempt in a throttle's log unless it is at its limit.
pub(crate) static THROTTLE_TAKE: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/throttle_take.lua")));

/// Settles a login attempt in a throttle's log: failed, given back or cleared.
pub(crate) static THROTTLE_SETTLE: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/throttle_settle.lua")));

//! The Lua scripts for the writes that must be atomic: creating a session without overwriting
//! another, and replacing a whole state. (Reads and the writes of changed entries need none:
//! plain commands in one pipeline cost Redis a fraction of a script call.)

use std::sync::LazyLock;

use redis::Cmd;

/// A Lua script, sent by its SHA1 (`EVALSHA`) and loaded into Redis when Redis lacks it.
#[derive(Debug)]
pub(crate) struct LuaScript {
    pub(crate) code: &'static str,
    hash: String,
}

impl LuaScript {
    fn new(code: &'static str) -> Self {
        Self {
            code,
            hash: redis::Script::new(code).get_hash().to_owned(),
        }
    }

    /// `EVALSHA` of this script on one key; the caller appends the arguments.
    pub(crate) fn on_key(&self, key: &str) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.hash).arg(1).arg(key);
        cmd
    }

    /// `SCRIPT LOAD` of this script.
    pub(crate) fn load(&self) -> Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(self.code);
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

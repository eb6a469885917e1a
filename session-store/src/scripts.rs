//! The Lua scripts that make each store operation one atomic Redis round trip.

use std::sync::LazyLock;

use redis::Script;

macro_rules! session_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/prelude.lua"),
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

/// Slides a session's expiry and, when asked, returns its fields.
pub(crate) static TOUCH: LazyLock<Script> = session_script!("touch.lua");

/// Creates a session, never overwriting one.
pub(crate) static SAVE: LazyLock<Script> = session_script!("save.lua");

/// Replaces a live session's entries; a session that is gone stays gone.
pub(crate) static UPDATE: LazyLock<Script> = session_script!("update.lua");

//! The session rules' parts: ids and their shape, Redis keys, how entries map to hash fields,
//! the sealing of their values, what a request changed, the Lua scripts, and the clock.

pub(crate) mod changes;
pub(crate) mod clock;
pub(crate) mod fields;
pub(crate) mod key;
pub(crate) mod scripts;
pub(crate) mod seal;
pub(crate) mod session_id;

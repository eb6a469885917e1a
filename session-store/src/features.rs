//! What the store offers beyond actix-session's `SessionStore`, each on the same Redis: a
//! user's sessions (`users`), the login throttle, where a session lives (`location`), lifecycle
//! events published on a channel (`events`) and read back (`subscriber`).

pub(crate) mod events;
pub(crate) mod location;
pub(crate) mod subscriber;
pub(crate) mod throttle;
pub(crate) mod users;

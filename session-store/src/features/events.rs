//! Session lifecycle events over Redis pub/sub: what happened to which session, published as
//! small JSON messages on one channel under the store's prefix, by the script that makes the
//! write they report (so in its round trip, and only when the write happened).
//!
//! The channel is an ordinary one (`PUBLISH`), also on a cluster: session events are few
//! (logins, logouts, revocations, not reads), an ordinary channel can be subscribed on any node
//! of a cluster, and a subscriber that loses its node goes on from any other. Sharded pub/sub
//! (`SPUBLISH`) would keep the messages within one shard, at the price of a subscriber that
//! must follow the channel's slot through failovers and resharding.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::session::key::RedisKey;

/// What happened to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SessionEventKind {
    /// A session was created under a fresh id (a login, a first write).
    Created,
    /// A session was renewed: saved under a fresh id (`previous` names the old one).
    Renewed,
    /// A session was deleted: a logout, or the old id of a renewal.
    Deleted,
    /// A session was revoked by [`RedisSessionStore::revoke`](crate::store::RedisSessionStore::revoke)
    /// or [`revoke_all`](crate::store::RedisSessionStore::revoke_all).
    Revoked,
    /// A session ended by its lifetime: past its absolute lifetime, found so by a read or a
    /// write; or idle, expired by Redis (announced only when the server sends keyspace
    /// notifications for expired keys: `notify-keyspace-events` with `Ex`).
    Expired,
    /// A session was ended by a login of its user beyond
    /// [`max_sessions_per_user`](crate::builder::RedisSessionStoreBuilder::max_sessions_per_user): the
    /// user's oldest.
    Evicted,
}

/// One lifecycle event, as published (JSON) and as a [subscriber](crate::features::subscriber::SessionEvents) hands
/// it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionEvent {
    /// What happened.
    pub event: SessionEventKind,
    /// The session's reference (the first 12 characters of its id's digest, as log lines
    /// carry it): never the id.
    pub session: String,
    /// The session's user (the user entry's value; a JSON string is given unquoted), when
    /// known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// When, in RFC 3339.
    pub time: String,
    /// The publishing instance's label, when the application set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// For a renewal, the reference of the session it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

impl SessionEvent {
    /// An event of now about the session at `key`; `user` is the user entry's stored value.
    pub(crate) fn new(event: SessionEventKind, key: &RedisKey, user: Option<&str>) -> Self {
        Self {
            event,
            session: key.reference().to_owned(),
            user: user.map(user_name),
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            instance: None,
            previous: None,
        }
    }
}

/// A user entry's stored value as events and lists give it: a JSON string unquoted, anything
/// else as the JSON it is.
pub(crate) fn user_name(stored: &str) -> String {
    serde_json::from_str::<String>(stored).unwrap_or_else(|_| stored.to_owned())
}

/// Where and as whom a store publishes.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    pub(crate) channel: String,
    pub(crate) instance: Option<String>,
}

impl Publisher {
    /// The channel of the store with `prefix`.
    pub(crate) fn channel(prefix: &str) -> String {
        format!("{prefix}events")
    }

    /// The message that announces `event`: its JSON, with this instance's label.
    pub(crate) fn message(&self, mut event: SessionEvent) -> String {
        event.instance.clone_from(&self.instance);
        serde_json::to_string(&event).expect("an event serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_small_json_without_ids() {
        let key = RedisKey::for_id("app:", "an-id-of-a-session");
        let event = SessionEvent::new(SessionEventKind::Created, &key, Some("\"alice\""));
        let json = serde_json::to_value(&event).expect("JSON");
        assert_eq!(json["event"], "created");
        assert_eq!(json["user"], "alice");
        assert_eq!(json["session"], key.reference());
        assert!(json.get("instance").is_none());
        assert!(!json.to_string().contains("an-id-of-a-session"));
        assert_eq!(user_name("42"), "42");
    }
}

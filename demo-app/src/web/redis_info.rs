//! Where the visitor's session lives, as pages and `/api/me` show it.

use serde::{Deserialize, Serialize};
use session_store::{CurrentSession, RedisSessionStore};

/// The Redis behind the demo, and where in it the visitor's session is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct RedisInfo {
    /// `"single"`, `"cluster"` or `"sentinel"`.
    pub topology: String,
    /// The server that holds the session now (`host:port`): the single server, the primary
    /// the sentinels name, or the primary that owns the session's slot. Absent without a
    /// session, or when Redis could not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// On a cluster, the session's hash slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u16>,
}

impl RedisInfo {
    /// Where the request's session lives, as `store` knows it (no question to Redis but, on a
    /// cluster, the slot map at most once a second). A Redis that cannot say leaves the place
    /// out: the page is shown all the same.
    pub(crate) async fn of(store: &RedisSessionStore, current: &CurrentSession) -> Self {
        let location = store.location(current).await.ok().flatten();
        Self {
            topology: store.topology().name().to_owned(),
            node: location.as_ref().map(|location| location.node.clone()),
            slot: location.and_then(|location| location.slot),
        }
    }
}

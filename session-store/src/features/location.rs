//! Where a request's session lives: for pages that show it, and for handlers that need their
//! own session's reference.

use std::{
    convert::Infallible,
    future::Ready,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use actix_web::{FromRequest, HttpRequest, dev::Payload};
use redis::Value;

use crate::{
    backend::pool::Topology,
    error::StoreError,
    handle::Handle,
    request::scope,
    session::key::RedisKey,
    telemetry::instruments::{Operation, Outcome},
};

/// The session of the request being handled, as the store loaded it: a handler's way to its
/// own session's [reference](Self::reference) and [location](crate::RedisSessionStore::location).
///
/// An extractor; it knows the session only behind [`TrackChanges`](crate::request::middleware::TrackChanges), and
/// only a session that existed before the request (a session the request creates gets its id
/// when the response goes out).
///
/// ```no_run
/// use actix_web::Responder;
/// use session_store::CurrentSession;
///
/// async fn whoami(current: CurrentSession) -> impl Responder {
///     current.reference().unwrap_or("no session").to_owned()
/// }
/// ```
#[derive(Debug, Clone)]
pub struct CurrentSession {
    key: Option<RedisKey>,
}

impl CurrentSession {
    /// No session: for listing a user's sessions outside a request (a job, an admin tool),
    /// with none marked as current.
    pub fn none() -> Self {
        Self { key: None }
    }

    /// The session's reference: the first 12 characters of its id's SHA-256 digest, as the
    /// store's log lines carry it. It names the session and cannot be turned into a cookie.
    pub fn reference(&self) -> Option<&str> {
        self.key.as_ref().map(RedisKey::reference)
    }

    /// The digest of the session's id, as the user index lists it.
    pub(crate) fn digest(&self) -> Option<&str> {
        self.key.as_ref().map(RedisKey::digest)
    }
}

impl FromRequest for CurrentSession {
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn from_request(_: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Self {
            key: scope::loaded_key(),
        }))
    }
}

/// Where a session lives now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionLocation {
    /// The kind of deployment.
    pub topology: Topology,
    /// The server that holds the session (`host:port`): the single node, the primary the
    /// sentinels name, or on a cluster the primary that owns its slot now (after a failover,
    /// the promoted replica).
    pub node: String,
    /// On a cluster, the session's hash slot.
    pub slot: Option<u16>,
}

/// Where the session of `current` lives now: see `RedisSessionStore::location`.
///
/// Known without asking, where the store knows it: the server it connects to, the primary the
/// sentinels named last, and on a cluster the slot (computed from the key) and its owner in a
/// slot map asked for at most once per [`SLOT_MAP_AGE`]. Only a store on a manager of its own
/// (no address known) asks the server (`CLIENT INFO`).
pub(crate) async fn locate(
    handle: &Handle,
    current: &CurrentSession,
) -> Result<Option<SessionLocation>, StoreError> {
    let Some(key) = &current.key else {
        return Ok(None);
    };
    let manager = handle.backend().pool().manager();
    let topology = manager.topology();
    let (node, slot) = if topology == Topology::Cluster {
        let slot = slot_of(key.as_str().as_bytes());
        (handle.slot_map().owner(handle, slot).await?, Some(slot))
    } else if let Some(node) = manager.known_server() {
        (node, None)
    } else {
        let question = redis::cmd("CLIENT").arg("INFO").clone();
        let asking = handle.backend().query::<String>(&question);
        let info = handle
            .run(Operation::Location, asking, |_| Outcome::Ok)
            .await?;
        (server_address(&info).unwrap_or_default().to_owned(), None)
    };
    Ok(Some(SessionLocation {
        topology,
        node,
        slot,
    }))
}

/// The hash slot of `key`, as Redis Cluster computes it (CRC16 of the key or of its hash tag).
fn slot_of(key: &[u8]) -> u16 {
    let tag = key
        .iter()
        .position(|&byte| byte == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&byte| byte == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tag) % 16384
}

/// How long a cluster's slot map serves `location` before it is asked for again.
pub(crate) const SLOT_MAP_AGE: Duration = Duration::from_secs(1);

/// The cluster's slot map (`CLUSTER SLOTS`) as asked for last, and when.
#[derive(Debug, Default)]
pub(crate) struct SlotMap(Mutex<Option<(Instant, Arc<Value>)>>);

impl SlotMap {
    /// The address of the primary that owns `slot`, from a map no older than [`SLOT_MAP_AGE`].
    async fn owner(&self, handle: &Handle, slot: u16) -> Result<String, StoreError> {
        let fresh = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|(asked, _)| asked.elapsed() < SLOT_MAP_AGE)
            .map(|(_, map)| Arc::clone(map));
        let map = match fresh {
            Some(map) => map,
            None => {
                let question = redis::cmd("CLUSTER").arg("SLOTS").clone();
                let asking = handle.backend().query::<Value>(&question);
                let map = Arc::new(
                    handle
                        .run(Operation::Location, asking, |_| Outcome::Ok)
                        .await?,
                );
                *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((Instant::now(), Arc::clone(&map)));
                map
            }
        };
        Ok(owner(&map, slot).unwrap_or_default())
    }
}

/// The address of the primary that owns `slot`, from a `CLUSTER SLOTS` reply: entries of
/// `[first slot, last slot, [host, port, id], replicas...]`.
fn owner(slots: &Value, slot: u16) -> Option<String> {
    let Value::Array(ranges) = slots else {
        return None;
    };
    ranges.iter().find_map(|range| {
        let Value::Array(range) = range else {
            return None;
        };
        let [
            Value::Int(first),
            Value::Int(last),
            Value::Array(primary),
            ..,
        ] = range.as_slice()
        else {
            return None;
        };
        if !(*first..=*last).contains(&i64::from(slot)) {
            return None;
        }
        let host: String = redis::from_redis_value_ref(primary.first()?).ok()?;
        let port: u16 = redis::from_redis_value_ref(primary.get(1)?).ok()?;
        Some(format!("{host}:{port}"))
    })
}

/// The server's own address (`laddr=`) in a `CLIENT INFO` line.
fn server_address(info: &str) -> Option<&str> {
    info.split_whitespace()
        .find_map(|field| field.strip_prefix("laddr="))
}

#[cfg(test)]
mod tests {
    use super::slot_of;

    #[test]
    fn slots_are_the_clusters() {
        // Values from Redis's `CLUSTER KEYSLOT`.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"session:abc"), 14788);
        assert_eq!(slot_of(b"{user1000}.following"), 3443);
        // An empty tag: the whole key.
        assert_eq!(slot_of(b"foo{}{bar}"), 8363);
    }
}

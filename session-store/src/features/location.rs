//! Where a request's session lives: for pages that show it, and for handlers that need their
//! own session's reference.

use std::{convert::Infallible, future::Ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload};
use redis::Value;

use crate::{
    backend::{batch::Batch, pool::Topology},
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
pub(crate) async fn locate(
    handle: &Handle,
    current: &CurrentSession,
) -> Result<Option<SessionLocation>, StoreError> {
    let Some(key) = &current.key else {
        return Ok(None);
    };
    let backend = handle.backend();
    let topology = backend.pool().manager().topology();
    let asking = async {
        Ok(if topology == Topology::Cluster {
            let mut pipe = Batch::new();
            pipe.cmd("CLUSTER").arg("KEYSLOT").arg(key);
            pipe.cmd("CLUSTER").arg("SLOTS");
            let (slot, slots): (u16, Value) = backend.query(&pipe).await?;
            SessionLocation {
                topology: Topology::Cluster,
                node: owner(&slots, slot).unwrap_or_default(),
                slot: Some(slot),
            }
        } else {
            let info: String = backend.query(redis::cmd("CLIENT").arg("INFO")).await?;
            SessionLocation {
                topology,
                node: server_address(&info).unwrap_or_default().to_owned(),
                slot: None,
            }
        })
    };
    let location = handle
        .run(Operation::Location, asking, |_| Outcome::Ok)
        .await?;
    Ok(Some(location))
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

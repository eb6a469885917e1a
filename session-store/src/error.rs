//! The store's error type, how it maps onto actix-session's errors, and how a handler's
//! request that one fails is answered.

use std::{fmt, time::Duration};

use actix_session::storage::{LoadError, SaveError, UpdateError};
use actix_web::{
    HttpResponse, ResponseError,
    http::{
        StatusCode,
        header::{HeaderValue, RETRY_AFTER},
    },
};
use deadpool::managed::PoolError;
use redis::{ErrorKind, ServerErrorKind};
use tracing::Level;

use crate::telemetry::failure_log;

/// Everything that can go wrong in a store operation.
///
/// actix-session only sees its own `LoadError`/`SaveError`/`UpdateError`; these wrap a
/// `StoreError`, so the whole cause chain still reaches the logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No connection could be had from the pool in time, or connecting to Redis failed.
    #[error("could not get a Redis connection from the pool")]
    Pool(#[source] deadpool::managed::PoolError<redis::RedisError>),

    /// The pool has no async runtime, so the store's pool timeouts cannot apply.
    #[error(
        "the Redis pool was built without a runtime, so its timeouts cannot apply: \
         build it with `Runtime::Tokio1`"
    )]
    PoolWithoutRuntime,

    /// The Redis URL cannot be used.
    #[error("invalid Redis URL")]
    InvalidUrl(#[source] redis::RedisError),

    /// A setting of the builder is out of its range; nothing was built.
    #[error("the store setting `{setting}` {problem}")]
    InvalidSetting {
        /// The builder method that sets it (`"command_timeout"`).
        setting: &'static str,
        /// What it must be.
        problem: &'static str,
    },

    /// Redis answered with an error, or the connection broke.
    #[error("Redis command failed")]
    Redis(#[from] redis::RedisError),

    /// Redis did not answer a command within the command timeout.
    #[error("Redis did not answer within {0:?}")]
    CommandTimeout(Duration),

    /// A request that went on anonymous, because Redis was unavailable when its session was
    /// loaded ([`WhenUnavailable::Anonymous`](crate::config::WhenUnavailable::Anonymous)), tried to
    /// write a session: refused, since a new one would replace the visitor's cookie. Not a
    /// Redis error of its own: the sign of the outage that sent the request on anonymous, and
    /// answered `503` as one.
    #[error("Redis was unavailable when this request's session was loaded; it cannot write one")]
    WentAnonymous,

    /// Fewer replicas than [`min_replica_acks`](crate::builder::RedisSessionStoreBuilder::min_replica_acks)
    /// asks for acknowledged a write in time. The primary has the write, but a failover could
    /// lose it.
    #[error("the write reached {acked} of the {wanted} replicas it must reach in time")]
    NotReplicated {
        /// Replicas that acknowledged the write.
        acked: u32,
        /// Replicas the store waits for.
        wanted: u32,
    },

    /// A store operation did not finish within the sum of the store's timeouts.
    #[error("the session store operation did not finish within {0:?}")]
    Deadline(Duration),

    /// The session state is larger than the configured limit; nothing was written.
    #[error("session state of {size} bytes is over the limit of {limit} bytes")]
    StateTooLarge {
        /// Bytes of entry names and values in the refused state.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// A user's sessions were asked for, but the store names no user entry
    /// ([`user_entry`](crate::builder::RedisSessionStoreBuilder::user_entry)).
    #[error("the store names no user entry, so it keeps no index of users' sessions")]
    NoUserEntry,

    /// A user given to the store could not be serialized as the user entry holds it.
    #[error("the user cannot be serialized as a session entry")]
    InvalidUser(#[source] serde_json::Error),

    /// Freshly generated session ids were already taken, which a working CSPRNG never does.
    #[error("freshly generated session ids were already in use")]
    IdCollision,
}

/// Seconds a client is asked to wait after a `503` for an unreachable Redis.
const RETRY_AFTER_SECONDS: &str = "1";

/// What a failed operation means for the request, and so how it is answered and counted: the
/// one classification of a [`StoreError`], which the `503`/`413`/`500` answer, the metrics'
/// outcome and the request's scope all take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// Redis could not be reached or could not serve: try again later (`503`).
    Unavailable,
    /// The state is over the size limit (`413`).
    TooLarge,
    /// Anything else (`500`).
    Internal,
}

impl StoreError {
    /// The class of this error: see [`ErrorClass`].
    pub(crate) fn class(&self) -> ErrorClass {
        if self.is_unavailable() {
            ErrorClass::Unavailable
        } else if matches!(self, Self::StateTooLarge { .. }) {
            ErrorClass::TooLarge
        } else {
            ErrorClass::Internal
        }
    }

    /// Whether Redis could not be reached or could not serve (a pool, connection or timeout
    /// failure, or Redis loading, read-only, down or out of memory): the request may succeed later, so it
    /// deserves a `503 Service Unavailable` rather than a `500`.
    pub fn is_unavailable(&self) -> bool {
        match self {
            // A connection that could not be made for a lasting reason (wrong password, bad
            // TLS settings) is a misconfiguration, not an outage.
            Self::Pool(PoolError::Backend(err)) | Self::Redis(err) => {
                // A full Redis (`maxmemory` reached under `noeviction`) refuses writes with
                // `OOM` until memory frees up: an outage of writes, not a misconfiguration of
                // the store.
                err.code() == Some("OOM")
                    || (err.is_io_error() && !is_tls_refusal(err))
                    || err.is_connection_dropped()
                    || err.is_connection_refusal()
                    || err.is_timeout()
                    // A cluster none of whose nodes for the key could be reached; sentinels
                    // that name no primary that answers as one (during a failover, or for a
                    // master name they do not know: the logs tell which).
                    || matches!(
                        err.kind(),
                        ErrorKind::ClusterConnectionNotFound
                            | ErrorKind::MasterNameNotFoundBySentinel
                            | ErrorKind::NoValidReplicasFoundBySentinel
                    )
                    || matches!(
                        err.kind(),
                        ErrorKind::Server(
                            ServerErrorKind::BusyLoading
                                | ServerErrorKind::TryAgain
                                | ServerErrorKind::ClusterDown
                                | ServerErrorKind::MasterDown
                                | ServerErrorKind::ReadOnly
                        )
                    )
            }
            Self::Pool(_)
            | Self::CommandTimeout(_)
            | Self::Deadline(_)
            | Self::WentAnonymous
            | Self::NotReplicated { .. } => true,
            _ => false,
        }
    }
}

impl StoreError {
    /// This error and its causes on one line (`a: b: c`, each from its `Display`), as the
    /// store logs them: for a log line that must not carry a `Debug` (a backtrace) or span
    /// lines.
    pub fn chain(&self) -> impl fmt::Display + '_ {
        failure_log::Chain(self)
    }
}

/// A handler that calls the store itself (listing sessions, the login throttle) may return
/// its error with `?`: the request is answered as [`TrackChanges`](crate::request::middleware::TrackChanges)
/// answers the store's own failures, `503` with `Retry-After` when Redis is unavailable,
/// `413` for state over the limit, `500` otherwise, with no body, and logged in one line of
/// at most one a second per cause.
impl ResponseError for StoreError {
    fn status_code(&self) -> StatusCode {
        match self.class() {
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        failure_response(self.status_code(), &self.chain().to_string())
    }
}

/// The response to a request that a store failure with `cause` failed with `status`, logged
/// (one line per cause per second): no body, and for a `503`, when to try again.
pub(crate) fn failure_response(status: StatusCode, cause: &str) -> HttpResponse {
    log_failure(status, cause);
    let mut response = HttpResponse::new(status);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    }
    response
}

/// Logs the failure of a request, at the level its status deserves.
pub(crate) fn log_failure(status: StatusCode, cause: &str) {
    match status {
        StatusCode::SERVICE_UNAVAILABLE => {
            failure_log::log(Level::WARN, "Redis unavailable: answering 503", cause);
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            failure_log::log(
                Level::INFO,
                "session state over the limit: answering 413",
                cause,
            );
        }
        _ => failure_log::log(
            Level::ERROR,
            "the session store failed: answering 500",
            cause,
        ),
    }
}

/// Whether TLS refused the connection (an unknown CA, a certificate for another name): a
/// lasting misconfiguration, although redis-rs reports it as an I/O error.
fn is_tls_refusal(err: &redis::RedisError) -> bool {
    #[cfg(feature = "tls")]
    {
        use std::{error::Error, io, sync::Arc};
        // redis-rs keeps the I/O error behind an `Arc`; tokio-rustls puts rustls's inside it.
        Error::source(err)
            .and_then(|source| source.downcast_ref::<Arc<dyn Error + Send + Sync>>())
            .and_then(|inner| inner.downcast_ref::<io::Error>())
            .and_then(io::Error::get_ref)
            .is_some_and(|cause| cause.is::<rustls::Error>())
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = err;
        false
    }
}

impl From<deadpool::managed::PoolError<redis::RedisError>> for StoreError {
    fn from(err: deadpool::managed::PoolError<redis::RedisError>) -> Self {
        match err {
            deadpool::managed::PoolError::NoRuntimeSpecified => Self::PoolWithoutRuntime,
            err => Self::Pool(err),
        }
    }
}

impl From<StoreError> for LoadError {
    fn from(err: StoreError) -> Self {
        Self::Other(err.into())
    }
}

impl From<StoreError> for SaveError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::StateTooLarge { .. } => Self::Serialization(err.into()),
            err => Self::Other(err.into()),
        }
    }
}

impl From<StoreError> for UpdateError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::StateTooLarge { .. } => Self::Serialization(err.into()),
            err => Self::Other(err.into()),
        }
    }
}

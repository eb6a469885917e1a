#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The folders are the map. A request passes `request` (the `TrackChanges` middleware opens
// the request's scope), then `store` (actix-session's `SessionStore`), which applies the
// `session` rules (ids, Redis keys, the hash's fields, sealed values, changes, Lua scripts)
// and reaches Redis through the `backend` (deadlines, batches, the pool of connections,
// Sentinel). Beside the request path: the `features` built on it (a user's sessions, the
// login throttle, where a session lives, lifecycle events and their subscriber) and
// `telemetry` (metrics, log lines).
// `config` holds the settings and their builder, `error` the one error type.
mod backend;
mod builder;
mod config;
mod error;
mod features;
mod handle;
mod near;
mod request;
mod session;
mod store;
mod telemetry;

pub use deadpool::Runtime;
pub use deadpool_redis::{self, redis};

pub use crate::{
    backend::connection::Connection,
    backend::pool::{Manager, Pool, Topology},
    backend::version::MIN_REDIS_VERSION,
    builder::RedisSessionStoreBuilder,
    config::{LegacySessions, LegacyStep, WhenUnavailable},
    error::StoreError,
    features::events::{SessionEvent, SessionEventKind},
    features::location::{CurrentSession, SessionLocation},
    features::subscriber::{SessionEvents, SessionNotice},
    features::throttle::{LoginAttempt, LoginThrottle, ThrottleCause, ThrottleLimits, Throttled},
    features::users::UserSession,
    request::keys::CookieKeys,
    request::middleware::{TrackChanges, TrackChangesService},
    store::RedisSessionStore,
};

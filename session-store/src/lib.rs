#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// In the order a request passes them: `middleware` (TrackChanges) opens the request's `scope`;
// `store` checks the id's shape (`session_id`), names its `key`, and applies the session rules,
// mapping entries to hash fields (`state`), writing only the `changes` or running `scripts`,
// and logging lifecycle `events`; `backend` carries each round trip to Redis through the
// `pool` of `connection`s. Beside them: `config` (the builder) and `error`.
mod backend;
mod batch;
mod changes;
mod clock;
mod config;
mod connection;
mod error;
mod events;
mod failure_log;
mod index;
mod key;
mod lifecycle;
mod location;
mod metrics;
mod middleware;
mod pool;
mod scope;
mod scripts;
mod sentinel;
mod session_id;
mod state;
mod store;
mod subscriber;
mod throttle;

pub use deadpool::Runtime;
pub use deadpool_redis::{self, redis};

pub use crate::{
    config::{RedisSessionStoreBuilder, WhenUnavailable},
    connection::Connection,
    error::StoreError,
    index::UserSession,
    lifecycle::{SessionEvent, SessionEventKind},
    location::{CurrentSession, SessionLocation, Topology},
    middleware::{TrackChanges, TrackChangesService},
    pool::{MIN_REDIS_VERSION, Manager, Pool},
    store::RedisSessionStore,
    subscriber::{SessionEvents, SessionNotice},
    throttle::{LoginAttempt, LoginThrottle, ThrottleCause, ThrottleLimits, Throttled},
};

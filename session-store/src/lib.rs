//! A Redis session store for [actix-session], through a [deadpool-redis] pool.
//!
//! [`RedisSessionStore`] implements actix-session's `SessionStore`, so it drops into
//! `SessionMiddleware::new(store, key)` unchanged. Compared with the Redis store inside
//! actix-session it:
//!
//! - loads a session and slides its idle expiry in **one round trip**, and, behind
//!   [`TrackChanges`], skips the second one actix-session asks for with
//!   `TtlExtensionPolicy::OnEveryRequest`;
//! - never brings back a session that was logged out, revoked or expired while a request was
//!   writing to it, and, behind [`TrackChanges`], writes only the entries a request changed, so
//!   overlapping requests of one session lose nothing;
//! - hands out pooled connections without deadpool-redis's per-checkout `PING` while they
//!   keep working (see [`Manager`]);
//! - stores only a SHA-256 hash of the session id in Redis keys, so reading Redis hands nobody
//!   a usable cookie, and never sends a cookie of the wrong shape to Redis at all;
//! - enforces an idle timeout *and* an absolute lifetime;
//! - refuses session state over a size limit with a typed error, leaving the stored state as
//!   it was;
//! - bounds every Redis call with a timeout and every operation with a deadline and, behind
//!   [`TrackChanges`], answers `503` with `Retry-After` when Redis is unavailable (actix-session
//!   alone answers a bare `500`), or lets requests go on anonymous
//!   ([`WhenUnavailable::Anonymous`]);
//! - logs the session lifecycle (created, deleted, expired, unknown or invalid ids) through
//!   `tracing`, never with an id;
//! - connects over TLS (`rediss://`, the `tls` feature, on by default) and works as a Redis ACL
//!   user confined to its key prefix.
//!
//! # Getting started
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use actix_session::{Session, SessionMiddleware};
//! use actix_web::{App, HttpServer, Responder, cookie::Key, web};
//! use session_store::{RedisSessionStore, TrackChanges};
//!
//! async fn visits(session: Session) -> actix_web::Result<impl Responder> {
//!     let visits = session.get::<u32>("visits")?.unwrap_or(0) + 1;
//!     session.insert("visits", visits)?;
//!     Ok(format!("visit number {visits}"))
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let store = RedisSessionStore::builder()
//!         .idle_timeout(Duration::from_secs(30 * 60))
//!         .build_with_url("redis://127.0.0.1:6379")
//!         .expect("a valid Redis URL");
//!     // All instances of the app must share this key: load it from your configuration.
//!     let key = Key::generate();
//!
//!     HttpServer::new(move || {
//!         App::new()
//!             // Each request writes only the entries it changed.
//!             .wrap(TrackChanges::new(SessionMiddleware::new(store.clone(), key.clone())))
//!             .route("/", web::get().to(visits))
//!     })
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
//! }
//! ```
//!
//! # Choosing settings
//!
//! [`RedisSessionStore::builder`] sets the key prefix, the idle timeout and absolute lifetime,
//! the largest state accepted, the timeouts of pool checkouts and commands, and what a request
//! gets when Redis is unavailable; each setter documents its default. For TLS with a private CA,
//! see [`RedisSessionStoreBuilder::build_with_connection_info`]. The idle and absolute
//! timeouts govern how long state lives in Redis; actix-session's own `session_ttl` only sets
//! the cookie's `Max-Age`.
//!
//! # Storage layout
//!
//! A session lives in one Redis hash at `{prefix}s:{base64url(sha256(id))}`. Each entry is one
//! field holding the value as actix-session hands it over; one metadata field (`\0c`, the
//! creation time) sits beside them, and an entry whose own name starts with a NUL byte is
//! stored with one more, so names never collide. A read is one pipelined `HGETALL` + `PEXPIRE`;
//! a write of changed entries one pipelined `HGET` + `HSET`/`HDEL` + `PEXPIRE`; creating a
//! session, or replacing a whole state without [`TrackChanges`], one atomic Lua script. The
//! README's design notes give the consistency rules in full.
//!
//! [actix-session]: https://docs.rs/actix-session
//! [deadpool-redis]: https://docs.rs/deadpool-redis

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
mod events;
mod pool;
mod scripts;
mod session_id;
mod state;
mod store;
mod tracking;

pub use deadpool::{Runtime, managed::Timeouts};
pub use deadpool_redis::{self, redis};

pub use crate::{
    config::{RedisSessionStoreBuilder, WhenUnavailable},
    error::StoreError,
    pool::{Connection, Manager, Pool, TRUST_WINDOW},
    store::RedisSessionStore,
    tracking::{TrackChanges, TrackChangesService},
};

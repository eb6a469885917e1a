//! Support for the workspace's test suites: real `redis-server` processes started on free
//! ports for one test and stopped when it ends, and ways to watch what reaches them.
//!
//! Nothing here talks to a Redis someone else started. Set `REDIS_SERVER_BIN` to use a
//! `redis-server` other than the one on `PATH`.

pub mod browser;
pub mod demo;
pub mod deployment;
pub mod failover;
mod logs;
mod monitor;
pub mod prometheus;
pub mod recorder;
mod redis_server;
mod relay;
pub mod session_app;
pub mod sse;
pub mod store_errors;
pub mod tls;

pub use crate::{
    logs::CapturedLogs,
    monitor::{Command, Monitor},
    redis_server::RedisServer,
    relay::{Hold, Relay},
};

/// The README's Rust examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The Rust examples of `docs/topologies.md` (a cluster, Sentinel), compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/topologies.md")]
pub struct TopologiesDoctests;

/// The Rust examples of `docs/security.md` (TLS with a private CA), compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/security.md")]
pub struct SecurityDoctests;

/// The Rust examples of `docs/users-sessions.md` (a user's sessions), compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/users-sessions.md")]
pub struct UsersSessionsDoctests;

/// The Rust example of `docs/switching.md` (the legacy setting), compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../docs/switching.md")]
pub struct SwitchingDoctests;

//! The demo application: several actix-web instances on different ports sharing login state
//! through one Redis, with `session-store` behind actix-session.
//!
//! `main.rs` only parses the command line; the app is built here ([`instance::configure`],
//! [`instance::session_middleware`]) so tests can start it in-process or as a process alike.

mod accounts;
mod activity;
mod api;
pub mod browser_guard;
pub mod cli;
mod client_address;
mod csrf;
pub mod hashing;
mod health;
pub mod instance;
pub mod launcher;
pub mod logging;
mod login_throttle;
pub mod metrics;
mod pages;
mod redis_info;
mod redis_target;
mod sessions;
mod state;
pub mod stats;
mod user;

//! The demo application: several actix-web instances on different ports sharing login state
//! through one Redis, with `session-store` behind actix-session.
//!
//! Two halves: [`web`], everything one instance serves, and [`launcher`], which starts a
//! private Redis, the instances and a load balancer and watches over them. What both use sits
//! here: the command line ([`cli`]), the cookie key, where Redis is, logging, and the reader
//! of Prometheus's text format ([`prometheus`]), which the stats page and the tests share. `main.rs`
//! only parses the command line and dispatches; the app is built in [`web`]
//! ([`web::configure`], [`web::instance::session_middleware`]) so tests can start it
//! in-process or as a process alike.

pub mod cli;
pub mod cookie_key;
pub mod launcher;
pub mod logging;
pub mod prometheus;
mod redis_target;
pub mod web;

/// One instance's server and cookies, under the path the test suites know.
pub use web::instance;

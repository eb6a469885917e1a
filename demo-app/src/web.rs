//! Everything one instance serves: the pages, the JSON API, the live activity stream, the
//! health check, the metrics and the stats page, with what they share (the accounts and
//! password hashing, the session's user, the login throttle, the cross-origin guard).
//!
//! [`instance::serve`] runs one instance; [`configure`] registers its routes.

mod accounts;
mod activity;
mod api;
pub mod browser_guard;
mod client_address;
mod csrf;
mod device_name;
pub mod hashing;
mod health;
pub mod instance;
pub mod legacy;
mod login_throttle;
pub mod metrics;
mod pages;
mod redis_info;
mod respond;
mod sessions;
mod state;
pub mod stats;
mod user;

use actix_web::web::ServiceConfig;

/// Registers every route of the demo.
pub fn configure(cfg: &mut ServiceConfig) {
    browser_guard::configure(cfg);
    pages::configure(cfg);
    api::configure(cfg);
    health::configure(cfg);
    sessions::configure(cfg);
    activity::configure(cfg);
    metrics::configure(cfg);
    stats::configure(cfg);
}

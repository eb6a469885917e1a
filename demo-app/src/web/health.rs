//! `GET /healthz`: whether this instance can reach its Redis, for the launcher, the load
//! balancer's operators and scripts.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use actix_web::{HttpResponse, http::header, web};

use session_store::RedisSessionStore;

/// What the health check asks and answers: the instance's store and port, and whether the
/// last check failed, so that a failure is logged when it starts and when it ends, not on
/// every check: the launcher asks ten times a second while it waits.
#[derive(Debug, Clone)]
pub(crate) struct HealthCheck {
    store: RedisSessionStore,
    port: u16,
    failing: Arc<AtomicBool>,
}

impl HealthCheck {
    /// The check of `store`, for the instance on `port`; passing until it first fails.
    pub(crate) fn new(store: RedisSessionStore, port: u16) -> Self {
        Self {
            store,
            port,
            failing: Arc::default(),
        }
    }

    /// Records a check's outcome; true when it differs from the last one's.
    fn changed(&self, failing: bool) -> bool {
        self.failing.swap(failing, Ordering::Relaxed) != failing
    }
}

/// Registers `/healthz`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health));
}

async fn health(check: web::Data<HealthCheck>) -> HttpResponse {
    match check.store.health_check().await {
        Ok(()) => {
            if check.changed(false) {
                tracing::info!("health check passes again: Redis answers");
            }
            HttpResponse::Ok().json(serde_json::json!({ "redis": "ok", "instance": check.port }))
        }
        Err(err) => {
            if check.changed(true) {
                tracing::warn!(error = %err.chain(), "health check failed (logged again when it passes)");
            }
            HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "1"))
                .json(serde_json::json!({ "redis": "unavailable", "instance": check.port }))
        }
    }
}

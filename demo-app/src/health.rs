//! `GET /healthz`: whether this instance can reach its Redis, for the launcher, the load
//! balancer's operators and scripts.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use actix_web::{HttpResponse, http::header, web};

use crate::state::AppState;

/// Whether the last health check failed, so that a failure is logged when it starts and when
/// it ends, not on every check: the launcher asks ten times a second while it waits.
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthLog {
    failing: Arc<AtomicBool>,
}

impl HealthLog {
    /// Records a check's outcome; true when it differs from the last one's.
    fn changed(&self, failing: bool) -> bool {
        self.failing.swap(failing, Ordering::Relaxed) != failing
    }
}

/// Registers `/healthz`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health));
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    match state.store.health_check().await {
        Ok(()) => {
            if state.health.changed(false) {
                tracing::info!("health check passes again: Redis answers");
            }
            HttpResponse::Ok().json(serde_json::json!({ "redis": "ok", "instance": state.port }))
        }
        Err(err) => {
            if state.health.changed(true) {
                tracing::warn!(error = %err.chain(), "health check failed (logged again when it passes)");
            }
            HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "1"))
                .json(serde_json::json!({ "redis": "unavailable", "instance": state.port }))
        }
    }
}

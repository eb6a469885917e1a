//! What an instance tells Prometheus: `GET /metrics` renders, in Prometheus's text format, the
//! store's `session_store_*` metrics (which `session-store` records through the `metrics`
//! facade) and the HTTP requests this instance served:
//!
//! - `http_requests_total{method, route, status}`, counter;
//! - `http_request_duration_seconds{method, route}`, histogram, from the request's arrival at
//!   the outermost middleware to its response's headers;
//! - `demo_password_checks_total`, counter: passwords hashed and compared, the work the login
//!   throttle bounds;
//! - `demo_log_lines_dropped_total`, counter: log lines dropped because standard error was
//!   stalled or closed (see `logging.rs`).
//!
//! `route` is the matched route's pattern (`/api/me`), never the raw path, so that a flood of
//! made-up paths cannot grow the label set: a request that matched no route is `unmatched`.
//! Methods other than the standard ones are counted as `other`, for the same reason.
//!
//! The recorder is the exporter's, installed process-wide when an instance starts; it has no
//! HTTP listener of its own: the route renders its handle. Every histogram is rendered as a
//! Prometheus histogram (`_bucket`, `_sum`, `_count`), not a summary, so that
//! `histogram_quantile` can aggregate instances (`docs/grafana-dashboard.json` does).

use std::{cell::RefCell, collections::HashMap, time::Instant};

use actix_web::{
    Error, HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, StatusCode, header},
    middleware::Next,
    web,
};
use anyhow::Context as _;
use metrics::{Counter, Histogram, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The counter of password checks (one argon2 hash each).
pub(crate) const PASSWORD_CHECKS: &str = "demo_password_checks_total";

/// Upper bounds, in seconds, of the duration histograms' buckets: a store operation on a
/// local Redis takes a few hundred microseconds, one that waits out a timeout seconds.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
    10.0,
];

/// Upper bounds, in bytes, of the state size histogram's buckets, up to the store's default
/// limit (64 KiB).
const STATE_BYTES_BUCKETS: [f64; 11] = [
    64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0,
];

/// The histograms and their buckets. Any other histogram would be rendered as a summary.
const HISTOGRAMS: [(&str, &[f64]); 3] = [
    (
        "session_store_operation_duration_seconds",
        &DURATION_BUCKETS,
    ),
    ("session_store_state_bytes", &STATE_BYTES_BUCKETS),
    ("http_request_duration_seconds", &DURATION_BUCKETS),
];

/// The routes that serve the metrics themselves, which the stats page leaves out of the
/// request rates it draws (Prometheus still counts them).
pub const OWN_ROUTES: [&str; 2] = ["/metrics", "/api/stats"];

/// The process's Prometheus recorder, through which everything `/metrics` shows is rendered.
#[derive(Debug, Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// Installs the Prometheus recorder as the process's `metrics` recorder.
    ///
    /// # Errors
    /// When the process has a recorder already.
    pub fn install() -> anyhow::Result<Self> {
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in HISTOGRAMS {
            builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)?;
        }
        let handle = builder
            .install_recorder()
            .context("cannot install the Prometheus recorder")?;
        Ok(Self { handle })
    }

    /// Everything recorded so far, in Prometheus's text format. Rendering also moves the
    /// histograms' new samples into their buckets, which keeps the recorder's memory bounded:
    /// the stats sampler renders every second.
    pub fn render(&self) -> String {
        metrics::counter!("demo_log_lines_dropped_total")
            .absolute(crate::logging::dropped_lines() as u64);
        self.handle.render()
    }
}

/// Registers `GET /metrics`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(exposition));
}

async fn exposition(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(metrics.render())
}

/// Middleware (through [`actix_web::middleware::from_fn`]) that counts every request by
/// method, matched route and status, and records how long it took. Wrapped outermost, it sees
/// the session middleware's failures as the status they are answered with.
///
/// # Errors
/// The inner service's, passed on unchanged.
pub async fn record_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    // Matched here, before the call: a request the session middleware fails never reaches
    // the router, and its answer comes back without the request.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let result = next.call(req).await;
    let status = match &result {
        Ok(response) => response.status(),
        Err(err) => err.as_response_error().status_code(),
    };
    let elapsed = started.elapsed().as_secs_f64();
    REQUEST_INSTRUMENTS.with_borrow_mut(|instruments| {
        instruments.record(method, route, status, elapsed);
    });
    result
}

thread_local! {
    /// This worker thread's request instruments.
    static REQUEST_INSTRUMENTS: RefCell<RequestInstruments> = RefCell::default();
}

/// The request metrics' handles, taken from the recorder once per route, method and status and
/// kept per worker thread. Taking them through the macros on every request costs a registry
/// lookup and the labels' allocations each time, which was most of this middleware's cost.
/// The set is bounded: routes are patterns, methods and statuses few. (A handle taken before
/// the recorder is installed would stay a no-op: the instance installs it first.)
#[derive(Default)]
struct RequestInstruments {
    routes: HashMap<String, RouteInstruments>,
}

struct RouteInstruments {
    label: SharedString,
    methods: Vec<MethodInstruments>,
}

struct MethodInstruments {
    method: &'static str,
    duration: Histogram,
    by_status: Vec<(StatusCode, Counter)>,
}

impl RequestInstruments {
    fn record(&mut self, method: &'static str, route: String, status: StatusCode, seconds: f64) {
        let RouteInstruments { label, methods } =
            self.routes
                .entry(route)
                .or_insert_with_key(|route| RouteInstruments {
                    label: SharedString::from(route.clone()),
                    methods: Vec::new(),
                });
        let index = match methods.iter().position(|known| known.method == method) {
            Some(index) => index,
            None => {
                methods.push(MethodInstruments {
                    method,
                    duration: ::metrics::histogram!(
                        "http_request_duration_seconds",
                        "method" => method,
                        "route" => label.clone(),
                    ),
                    by_status: Vec::new(),
                });
                methods.len() - 1
            }
        };
        let instruments = &mut methods[index];
        instruments.duration.record(seconds);
        let counter = match instruments
            .by_status
            .iter()
            .find(|(known, _)| *known == status)
        {
            Some((_, counter)) => counter,
            None => {
                let counter = ::metrics::counter!(
                    "http_requests_total",
                    "method" => method,
                    "route" => label.clone(),
                    "status" => status.as_u16().to_string(),
                );
                instruments.by_status.push((status, counter));
                &instruments.by_status[instruments.by_status.len() - 1].1
            }
        };
        counter.increment(1);
    }
}

/// The standard methods by name, any other as `other`.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

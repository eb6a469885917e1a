//! The stats page: this instance's request rates, store operations by outcome, store operation
//! durations and pool use, live. A sampler reads the instance's own metrics once a second
//! and keeps the last minute's points; `GET /api/stats` hands them out and a small script
//! (`static/stats.js`) draws them as SVG charts, polling every second.
//!
//! The script fetches without cookies, so the polling loads no session: the page keeps
//! updating while Redis is down, which is when it is most worth watching. Opened through the
//! load balancer, the page follows the instance that served it, on that instance's own port
//! (which `/api/stats` allows any origin to read: it holds counts, nothing of anyone's).

mod point;

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use actix_session::Session;
use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header},
    web,
};
use askama::Template;
use serde::Serialize;
use tokio::time::{MissedTickBehavior, interval};

use self::point::{Point, Reading};
use super::{
    metrics::Metrics,
    pages::PageContext,
    respond::{JAVASCRIPT, render, static_file},
    state::AppState,
};

/// How often the sampler reads the metrics.
const INTERVAL: Duration = Duration::from_secs(1);

/// How many points the page gets: a minute's.
const POINTS: usize = 60;

/// The last minute of an instance's stats, one point a second.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    history: Arc<Mutex<History>>,
}

#[derive(Debug, Default)]
struct History {
    last: Option<(Instant, Reading)>,
    points: VecDeque<Point>,
}

impl Stats {
    /// Starts sampling `metrics` every second, on the current actix runtime, for as long as it
    /// runs.
    pub fn start(metrics: Metrics) -> Self {
        let stats = Self::default();
        let sampler = stats.clone();
        actix_web::rt::spawn(async move {
            let mut ticks = interval(INTERVAL);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                sampler.sample(&metrics.render());
            }
        });
        stats
    }

    /// Adds the point since the last reading (the first reading only sets the baseline).
    fn sample(&self, rendered: &str) {
        let reading = Reading::of(rendered);
        let now = Instant::now();
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((then, last)) = &history.last {
            let seconds = now.duration_since(*then).as_secs_f64().max(f64::EPSILON);
            let point = reading.since(last, seconds, t);
            if history.points.len() == POINTS {
                history.points.pop_front();
            }
            history.points.push_back(point);
        }
        history.last = Some((now, reading));
    }

    fn points(&self) -> Vec<Point> {
        let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history.points.iter().cloned().collect()
    }
}

/// What `GET /api/stats` answers.
#[derive(Serialize)]
struct StatsBody {
    /// The port of the instance the points are of.
    instance: u16,
    interval_ms: u128,
    /// Oldest first.
    points: Vec<Point>,
}

#[derive(Template)]
#[template(path = "stats.html")]
struct StatsPage {
    page: PageContext,
}

/// Registers the stats page, its data and its files.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/stats", web::get().to(page))
        .route("/api/stats", web::get().to(points))
        .route("/static/stats.js", web::get().to(script))
        .route("/static/stats.css", web::get().to(stylesheet));
}

async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
) -> actix_web::Result<HttpResponse> {
    let page = PageContext::new(&req, &state, &session)?;
    render(&StatsPage { page }, StatusCode::OK)
}

async fn points(
    req: HttpRequest,
    state: web::Data<AppState>,
    stats: web::Data<Stats>,
) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(origin) = demo_origin(&req, &state) {
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::VARY, "Origin"));
    }
    response.json(StatsBody {
        instance: state.port,
        interval_ms: INTERVAL.as_millis(),
        points: stats.points(),
    })
}

/// The request's `Origin` when it is one of the demo's own pages (the balancer's or another
/// instance's, on this request's host name), which may read this instance's stats: the stats
/// page behind the balancer polls each instance on its own port. No other origin may.
fn demo_origin(req: &HttpRequest, state: &AppState) -> Option<String> {
    let origin = req.headers().get(header::ORIGIN)?.to_str().ok()?;
    let info = req.connection_info();
    let host = crate::web::pages::host_name(&info);
    let (base, port) = origin.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let ours = state.peers.contains(&port) || state.balancer_port == Some(port);
    (ours && base == format!("{}://{host}", info.scheme())).then(|| origin.to_owned())
}

/// The script that polls `/api/stats` and draws the charts (see the file).
async fn script() -> HttpResponse {
    static_file(JAVASCRIPT, include_str!("../../static/stats.js"))
}

async fn stylesheet() -> HttpResponse {
    static_file(
        "text/css; charset=utf-8",
        include_str!("../../static/stats.css"),
    )
}

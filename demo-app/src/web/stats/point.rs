//! One point of the stats page's charts: the rates and quantiles of one second, computed from
//! two readings of the instance's own metrics.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    prometheus::{Sample, samples},
    web::metrics::OWN_ROUTES,
};

/// The outcomes of store operations every point carries, even at zero, so that the page has a
/// line for each from the start (`session-store`'s `Outcome` names).
const OUTCOMES: [&str; 6] = [
    "ok",
    "not_found",
    "unavailable",
    "too_large",
    "dropped",
    "error",
];

/// The counters, histogram buckets and gauges a point is computed from, summed over every
/// store label, operation and route.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reading {
    requests: Requests,
    operations: BTreeMap<String, f64>,
    /// Cumulative counts of store operation durations by bucket upper bound (seconds),
    /// sorted by bound.
    durations: Vec<(f64, f64)>,
    pool: Pool,
    /// Redis round trips of store operations.
    round_trips: f64,
    /// Session reads by where they came from.
    reads: Reads,
}

/// Session reads by where they came from: the near cache, or Redis.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Reads {
    from_memory: f64,
    from_redis: f64,
}

/// Requests by how they were answered.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Requests {
    /// 1xx to 3xx.
    ok: f64,
    /// 4xx.
    client_error: f64,
    /// 5xx.
    server_error: f64,
}

/// The pool's connections and waiters (gauges: their latest values).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Pool {
    in_use: f64,
    idle: f64,
    waiters: f64,
}

/// Store operation durations over the second, in milliseconds, estimated from the histogram's
/// buckets as Prometheus's `histogram_quantile` does; `None` in a second without operations.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Durations {
    p50: Option<f64>,
    p99: Option<f64>,
}

/// What the page draws for one second.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Point {
    /// When the second ended, in milliseconds since the epoch.
    pub(crate) t: u64,
    /// Requests per second, by status class, the metrics' own routes left out.
    requests: Requests,
    /// Store operations per second, by outcome.
    operations: BTreeMap<String, f64>,
    duration_ms: Durations,
    pool: Pool,
    /// Session reads per second, by where they came from (the near cache's counters).
    reads: Reads,
    /// Redis round trips per request; `None` in a second without requests.
    round_trips_per_request: Option<f64>,
}

impl Reading {
    /// Reads the metrics of `text`, a rendering of the instance's recorder.
    pub(crate) fn of(text: &str) -> Self {
        let mut reading = Self::default();
        for sample in samples(text) {
            reading.add(&sample);
        }
        reading.durations.sort_by(|a, b| a.0.total_cmp(&b.0));
        reading
    }

    fn add(&mut self, sample: &Sample) {
        match sample.name.as_str() {
            "http_requests_total" => {
                if OWN_ROUTES.contains(&sample.label("route").unwrap_or_default()) {
                    return;
                }
                let class = match sample.label("status").and_then(|s| s.chars().next()) {
                    Some('5') => &mut self.requests.server_error,
                    Some('4') => &mut self.requests.client_error,
                    _ => &mut self.requests.ok,
                };
                *class += sample.value;
            }
            "session_store_operations_total" => {
                let outcome = sample.label("outcome").unwrap_or("unknown");
                *self.operations.entry(outcome.to_owned()).or_default() += sample.value;
            }
            "session_store_operation_duration_seconds_bucket" => {
                let bound = sample.label("le").and_then(|le| match le {
                    "+Inf" => Some(f64::INFINITY),
                    _ => le.parse().ok(),
                });
                if let Some(bound) = bound {
                    match self.durations.iter_mut().find(|(known, _)| *known == bound) {
                        Some((_, count)) => *count += sample.value,
                        None => self.durations.push((bound, sample.value)),
                    }
                }
            }
            "session_store_pool_connections" => match sample.label("state") {
                Some("in_use") => self.pool.in_use += sample.value,
                Some("idle") => self.pool.idle += sample.value,
                _ => {}
            },
            "session_store_pool_waiters" => self.pool.waiters += sample.value,
            "session_store_redis_round_trips_total" => self.round_trips += sample.value,
            "session_store_near_cache_reads_total" => match sample.label("result") {
                Some("hit") => self.reads.from_memory += sample.value,
                _ => self.reads.from_redis += sample.value,
            },
            _ => {}
        }
    }

    /// The point for the `seconds` between `earlier` and this reading, ending at `t`.
    pub(crate) fn since(&self, earlier: &Self, seconds: f64, t: u64) -> Point {
        let rate = |now: f64, then: f64| rounded((now - then).max(0.0) / seconds);
        let mut operations: BTreeMap<String, f64> = OUTCOMES
            .iter()
            .map(|outcome| ((*outcome).to_owned(), 0.0))
            .collect();
        for (outcome, &count) in &self.operations {
            let then = earlier.operations.get(outcome).copied().unwrap_or(0.0);
            operations.insert(outcome.clone(), rate(count, then));
        }
        let buckets: Vec<(f64, f64)> = self
            .durations
            .iter()
            .map(|&(bound, count)| {
                let then = earlier
                    .durations
                    .iter()
                    .find(|(known, _)| *known == bound)
                    .map_or(0.0, |&(_, count)| count);
                (bound, (count - then).max(0.0))
            })
            .collect();
        let millis = |q| quantile(q, &buckets).map(|seconds| rounded(seconds * 1000.0));
        let requests = self.requests.total() - earlier.requests.total();
        let round_trips = (self.round_trips - earlier.round_trips).max(0.0);
        Point {
            t,
            requests: Requests {
                ok: rate(self.requests.ok, earlier.requests.ok),
                client_error: rate(self.requests.client_error, earlier.requests.client_error),
                server_error: rate(self.requests.server_error, earlier.requests.server_error),
            },
            operations,
            duration_ms: Durations {
                p50: millis(0.5),
                p99: millis(0.99),
            },
            pool: self.pool,
            reads: Reads {
                from_memory: rate(self.reads.from_memory, earlier.reads.from_memory),
                from_redis: rate(self.reads.from_redis, earlier.reads.from_redis),
            },
            round_trips_per_request: (requests > 0.0).then(|| rounded(round_trips / requests)),
        }
    }
}

impl Requests {
    fn total(self) -> f64 {
        self.ok + self.client_error + self.server_error
    }
}

/// `value` to three decimals, which is all the page shows and keeps its JSON short.
fn rounded(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// The `q` quantile of cumulative `buckets` (upper bound, count), sorted by bound and ending
/// with `+Inf`: linear within the bucket it falls in, the lowest bucket starting at zero, and
/// the highest finite bound when it falls in `+Inf`'s, as `histogram_quantile` does.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let &(_, total) = buckets.last()?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(upper, count) in buckets {
        if count >= rank {
            if upper.is_infinite() {
                return Some(lower);
            }
            let share = if count > below {
                (rank - below) / (count - below)
            } else {
                1.0
            };
            return Some(lower + (upper - lower) * share);
        }
        (lower, below) = (upper, count);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(requests: u32, loads: u32, unavailable: u32, fast: u32, slow: u32) -> Reading {
        let text = format!(
            "http_requests_total{{method=\"GET\",route=\"/api/me\",status=\"200\"}} {requests}\n\
             http_requests_total{{method=\"GET\",route=\"/api/me\",status=\"503\"}} {unavailable}\n\
             http_requests_total{{method=\"GET\",route=\"/api/stats\",status=\"200\"}} 999\n\
             session_store_operations_total{{store=\"demo:\",operation=\"load\",outcome=\"ok\"}} {loads}\n\
             session_store_operations_total{{store=\"demo:\",operation=\"load\",outcome=\"unavailable\"}} {unavailable}\n\
             session_store_operation_duration_seconds_bucket{{store=\"demo:\",operation=\"load\",le=\"0.001\"}} {fast}\n\
             session_store_operation_duration_seconds_bucket{{store=\"demo:\",operation=\"load\",le=\"0.002\"}} {}\n\
             session_store_operation_duration_seconds_bucket{{store=\"demo:\",operation=\"load\",le=\"+Inf\"}} {}\n\
             session_store_pool_connections{{store=\"demo:\",state=\"in_use\"}} 2\n\
             session_store_pool_connections{{store=\"demo:\",state=\"idle\"}} 3\n",
            fast + slow,
            fast + slow,
        );
        Reading::of(&text)
    }

    #[test]
    fn rates_are_differences_over_the_interval_without_the_metrics_own_routes() {
        let earlier = reading(10, 10, 0, 0, 0);
        let point = reading(30, 26, 4, 0, 0).since(&earlier, 2.0, 7);
        assert_eq!(point.requests.ok, 10.0);
        assert_eq!(point.requests.server_error, 2.0);
        assert_eq!(point.operations["ok"], 8.0);
        assert_eq!(point.operations["unavailable"], 2.0);
        assert_eq!(point.operations["dropped"], 0.0);
        assert_eq!((point.pool.in_use, point.pool.idle), (2.0, 3.0));
        assert_eq!(point.duration_ms.p50, None, "no operation timed");
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_they_fall_in() {
        let earlier = reading(0, 0, 0, 50, 0);
        // Since then: 98 operations under 1 ms, 2 between 1 and 2 ms.
        let point = reading(0, 0, 0, 148, 2).since(&earlier, 1.0, 0);
        let p50 = point.duration_ms.p50.expect("operations");
        let p99 = point.duration_ms.p99.expect("operations");
        assert_eq!(p50, 0.51, "50/98 ms, rounded");
        assert_eq!(p99, 1.5);
    }

    #[test]
    fn a_quantile_in_the_open_bucket_is_the_highest_bound() {
        let buckets = [(0.001, 1.0), (0.002, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile(0.99, &buckets), Some(0.002));
        assert_eq!(quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
    }
}

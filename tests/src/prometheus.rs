//! The reader of Prometheus's text exposition format, strict with [`Exposition::parse`]: the
//! demo's own (`demo_app::prometheus`), which its stats page reads its metrics with, so that
//! the tests check `/metrics` with the same reader.

pub use demo_app::prometheus::{Exposition, Family, Kind, Sample, samples};

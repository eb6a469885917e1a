//! The process's metrics recorder, for tests that read the store's metrics back.

use std::{
    collections::BTreeMap,
    sync::{Mutex, OnceLock, PoisonError},
};

use metrics_util::{
    MetricKind,
    debugging::{DebugValue, DebuggingRecorder, Snapshotter},
};

/// A counter's labels, as (name, value) pairs in the order it was recorded with.
type Labels = Vec<(String, String)>;

/// Installs the process's recorder, once: call it before the store under test records
/// anything (the store registers each metric on first use).
pub fn install() {
    snapshotter();
}

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder).expect("the only recorder");
        snapshotter
    })
}

/// The counter `name` with exactly these labels, counted since the recorder was installed.
///
/// A snapshot drains the recorder's counters, other tests' too (tests of one binary share the
/// process under `cargo test`), so every read adds what it drains to totals that all share.
pub fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    static TOTALS: Mutex<BTreeMap<(String, Labels), u64>> = Mutex::new(BTreeMap::new());
    let mut totals = TOTALS.lock().unwrap_or_else(PoisonError::into_inner);
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        if let (MetricKind::Counter, DebugValue::Counter(count)) = (key.kind(), value) {
            let labels = key
                .key()
                .labels()
                .map(|label| (label.key().to_owned(), label.value().to_owned()))
                .collect();
            *totals
                .entry((key.key().name().to_owned(), labels))
                .or_default() += count;
        }
    }
    let labels: Labels = labels
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    totals.get(&(name.to_owned(), labels)).copied().unwrap_or(0)
}

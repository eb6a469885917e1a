//! The process's metrics recorder, for tests that read the store's metrics back.

use std::sync::OnceLock;

use metrics_util::debugging::{DebuggingRecorder, Snapshotter};

/// The snapshotter of the process's recorder, installed on the first call (install it before
/// the store under test records anything: the store registers each metric on first use).
pub fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder).expect("the only recorder");
        snapshotter
    })
}

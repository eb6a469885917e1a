//! The log lines the code under test writes, kept in memory for the test to read.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use tracing::subscriber::DefaultGuard;
use tracing_subscriber::{filter::LevelFilter, util::SubscriberInitExt as _};

/// Every log line at a level or above, written on this thread (where an `actix_web::test`
/// runs the app) while it lives, in `tracing`'s plain text format.
pub struct CapturedLogs {
    text: Buffer,
    _default: DefaultGuard,
}

impl CapturedLogs {
    /// Starts capturing the lines at `level` or above.
    pub fn start(level: LevelFilter) -> Self {
        let text = Buffer::default();
        let writer = text.clone();
        let default = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .set_default();
        Self {
            text,
            _default: default,
        }
    }

    /// The lines so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.0.lock().expect("not poisoned")).into_owned()
    }
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

//! A server-sent event stream (the demo's `GET /api/events`) read as it comes, by a plain
//! streaming HTTP client on a thread of its own.

use std::{
    io::{BufRead as _, BufReader},
    sync::mpsc::{self, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use actix_web::cookie::Cookie;
use serde_json::Value;

/// An open event stream: the JSON of each `data:` line, in order.
pub struct EventStream {
    events: mpsc::Receiver<Value>,
}

/// Why no event came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEvent {
    /// None within the time given.
    Timeout,
    /// The server ended the stream.
    Ended,
}

impl EventStream {
    /// Opens `url` with `cookie` (if any); the status when it is not `200`.
    ///
    /// # Errors
    /// The HTTP status of a refusal (`0` when no answer came).
    pub fn open(url: &str, cookie: Option<&Cookie<'_>>) -> Result<Self, u16> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_recv_response(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut request = agent.get(url).header("accept", "text/event-stream");
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("{}={}", cookie.name(), cookie.value()));
        }
        let response = request.call().map_err(|_| 0_u16)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(status);
        }
        let (sender, events) = mpsc::channel();
        let body = response.into_body().into_reader();
        thread::spawn(move || {
            for line in BufReader::new(body).lines() {
                let Ok(line) = line else { return };
                let Some(data) = line.strip_prefix("data:") else {
                    continue;
                };
                let event = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                if sender.send(event).is_err() {
                    return;
                }
            }
        });
        Ok(Self { events })
    }

    /// The next event, waiting up to `timeout`.
    ///
    /// # Errors
    /// When none comes in time, or the stream ended.
    pub fn next(&self, timeout: Duration) -> Result<Value, NoEvent> {
        self.events.recv_timeout(timeout).map_err(|err| match err {
            RecvTimeoutError::Timeout => NoEvent::Timeout,
            RecvTimeoutError::Disconnected => NoEvent::Ended,
        })
    }

    /// Waits up to `timeout` in all for the server to end the stream, skipping its events.
    ///
    /// # Errors
    /// [`NoEvent::Timeout`] when it is still open then.
    pub fn end(&self, timeout: Duration) -> Result<(), NoEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(deadline.saturating_duration_since(Instant::now())) {
                Ok(_) => {}
                Err(NoEvent::Ended) => return Ok(()),
                Err(NoEvent::Timeout) => return Err(NoEvent::Timeout),
            }
        }
    }

    /// The next event that `wanted` picks, skipping the others, waiting up to `timeout` in
    /// all.
    ///
    /// # Errors
    /// When none comes in time, or the stream ended.
    pub fn next_matching(
        &self,
        timeout: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Result<Value, NoEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.next(left)?;
            if wanted(&event) {
                return Ok(event);
            }
        }
    }
}

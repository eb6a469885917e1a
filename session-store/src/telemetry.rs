//! What the store tells its operators: metrics (`instruments`), lifecycle log lines (`log`),
//! and the rate-limited log of failed requests (`failure_log`).

pub(crate) mod failure_log;
pub(crate) mod instruments;
pub(crate) mod log;

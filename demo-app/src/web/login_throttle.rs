//! Login attempts counted in Redis before their password is checked, so that the limits hold
//! across every instance however many logins arrive at once: past `--max-failed-logins`
//! password checks for an account that did not succeed (or `--max-failed-logins-per-address`
//! from one client address), counting those under way, a login is refused with `429` without
//! a check, whichever instance it reaches. When failures alone fill the log, the refusals last
//! until the first of them is `--failed-login-window` old, and even the right password waits:
//! the point is that guessing gets no more tries, and a refusal that depended on the password
//! would tell the guesser it was right. When checks under way fill it (a user's own parallel
//! logins, a flood), the login may try again in a second. A check whose instance died counts
//! for the store's lease (30 s), no longer.
//!
//! Unknown usernames are counted as accounts are, so a `429` says nothing about which
//! accounts exist. Their counters are keys in Redis that end with their window; an address
//! can add at most its own limit of them per window before it is refused too.

use std::{net::IpAddr, time::Duration};

use actix_web::{HttpRequest, http::StatusCode};
use session_store::{ThrottleCause, ThrottleLimits, Throttled};

use super::{
    client_address::{self, client_address},
    hashing::{Busy, RETRY_AFTER_SECS},
    state::AppState,
};
use crate::cli::CommonArgs;

/// The limits the flags ask for.
pub(crate) fn limits(args: &CommonArgs) -> ThrottleLimits {
    ThrottleLimits::new(
        args.max_failed_logins,
        args.max_failed_logins_per_address,
        Duration::from_secs(args.failed_login_window),
    )
}

/// How a login attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The password is right: sign the user in.
    Verified,
    /// An unknown username or a wrong password (counted).
    Failed,
    /// Refused by the throttle: try again in `retry_after` seconds (`Retry-After`); `message`
    /// says why, for a person.
    Throttled { retry_after: u64, message: String },
    /// The password checks are saturated: try again in a moment (not counted).
    Busy,
    /// A username or password longer than any account's: refused before anything is counted
    /// or hashed.
    TooLong,
}

impl Attempt {
    /// How a login that did not verify is answered, by the API and the login form alike:
    /// its status and, for one that may try again soon, `Retry-After`'s seconds. `None` for
    /// [`Attempt::Verified`].
    pub(crate) fn refusal(&self) -> Option<(StatusCode, Option<String>)> {
        match self {
            Self::Verified => None,
            Self::Failed => Some((StatusCode::UNAUTHORIZED, None)),
            Self::Throttled { retry_after, .. } => {
                Some((StatusCode::TOO_MANY_REQUESTS, Some(retry_after.to_string())))
            }
            Self::Busy => Some((
                StatusCode::SERVICE_UNAVAILABLE,
                Some(RETRY_AFTER_SECS.to_owned()),
            )),
            Self::TooLong => Some((StatusCode::BAD_REQUEST, None)),
        }
    }
}

/// The longest username a login may name, in bytes.
pub(crate) const MAX_USERNAME: usize = 64;

/// The longest password a login may give, in bytes: far more than a passphrase needs, and
/// few enough that hashing it costs what hashing any password costs.
pub(crate) const MAX_PASSWORD: usize = 1024;

/// What a client that sent [`Attempt::TooLong`] is told.
pub(crate) const TOO_LONG: &str = "usernames have at most 64 bytes and passwords at most 1,024";

/// [`attempt`] from `req`'s client, a failure and a refusal by the throttle logged.
///
/// # Errors
/// As [`attempt`].
pub(crate) async fn log_in(
    req: &HttpRequest,
    state: &AppState,
    username: &str,
    password: &str,
) -> actix_web::Result<Attempt> {
    let client = client_address(req, state);
    let attempt = attempt(state, username, password, client).await?;
    match &attempt {
        Attempt::Failed => tracing::info!(%client, "failed login"),
        Attempt::Throttled { retry_after, .. } => {
            tracing::info!(%client, retry_after, "login refused by the throttle");
        }
        _ => {}
    }
    Ok(attempt)
}

/// Checks `password` for `username`, from `client`, within the limits: an attempt taken from
/// the counters first (refused at the limit), then the password, then the attempt settled
/// (kept when the password was wrong). A login that finds the hashing queue full is turned
/// away before any of it, and one that finds it full after taking its attempt gives it back.
///
/// # Errors
/// `503` with `Retry-After` when Redis is unavailable.
pub(crate) async fn attempt(
    state: &AppState,
    username: &str,
    password: &str,
    client: IpAddr,
) -> actix_web::Result<Attempt> {
    if username.len() > MAX_USERNAME || password.len() > MAX_PASSWORD {
        return Ok(Attempt::TooLong);
    }
    // A flood turned away by a full queue costs Redis nothing.
    if !state.hashing.has_room() {
        return Ok(Attempt::Busy);
    }
    let taken = state
        .login_throttle
        .attempt(username, client_address::counted_as(client))
        .await?;
    let attempt = match taken {
        Ok(attempt) => attempt,
        Err(throttled) => return Ok(refused(throttled)),
    };
    match state
        .accounts
        .verify(&state.hashing, username, password)
        .await
    {
        Err(Busy) => {
            attempt.not_checked().await?;
            Ok(Attempt::Busy)
        }
        Ok(true) => {
            attempt.succeeded().await?;
            Ok(Attempt::Verified)
        }
        Ok(false) => {
            attempt.failed().await?;
            Ok(Attempt::Failed)
        }
    }
}

/// `left` in whole seconds, rounded up and at least one: what `Retry-After` says.
fn whole_seconds(left: Duration) -> u64 {
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    seconds.max(1)
}

/// The answer to a refused login. One refused only because other logins for the account (or
/// from the address) are being checked may try again in a second: checks take a fraction of
/// one, and the lease's end is only the bound for a check whose process died.
fn refused(throttled: Throttled) -> Attempt {
    match throttled.cause {
        ThrottleCause::Failures => {
            let retry_after = whole_seconds(throttled.retry_after);
            Attempt::Throttled {
                retry_after,
                message: failures_message(retry_after),
            }
        }
        ThrottleCause::UnderWay => Attempt::Throttled {
            retry_after: 1,
            message: "Other logins for this account or from your address are being checked: \
                      try again in a second."
                .to_owned(),
        },
    }
}

/// What a person is told about a login refused for too many failures.
fn failures_message(retry_after: u64) -> String {
    let wait = if retry_after < 120 {
        format!("{retry_after} seconds")
    } else {
        format!("{} minutes", retry_after.div_ceil(60))
    };
    format!("Too many failed logins for this account or from your address: try again in {wait}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::from_millis(4_001)), 5);
        assert_eq!(whole_seconds(Duration::from_secs(4)), 4);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
    }

    #[test]
    fn the_wait_is_said_in_seconds_or_minutes() {
        assert!(failures_message(7).ends_with("try again in 7 seconds."));
        assert!(failures_message(299).ends_with("try again in 5 minutes."));
    }
}

//! Login throttling shared by every instance: logs of password checks per account and per
//! client address, kept in Redis, so that spreading guesses over instances gains an attacker
//! nothing.
//!
//! A login takes an attempt in both logs *before* its password is checked, in one step with
//! the test of the limit (a script per log), so that however many logins arrive at once on
//! however many instances, at most `limit` passwords that turn out wrong are checked per
//! window. The attempt counts while its check is under way, for at most a lease, and is then
//! settled: a wrong password counts as a failure for a window from then; a right one gives
//! the address its attempt back and clears the account's failures; a password never checked
//! gives both back. Each log is a sorted set whose entries are scored by when they stop
//! counting, on the server's clock, and the key ends by itself when the last one does.

use std::{net::IpAddr, sync::Arc, time::Duration};

use futures_util::future::{try_join, try_join_all};

use crate::{
    error::StoreError,
    handle::Handle,
    session::clock::millis,
    session::key,
    session::scripts::{LuaScript, THROTTLE_SETTLE, THROTTLE_TAKE},
    telemetry::instruments::{Operation, Outcome},
};

/// How many password checks that did not succeed a window allows, and how long a window lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThrottleLimits {
    /// Password checks per account in a window, not counting the right ones: failed, or
    /// under way.
    pub per_account: u32,
    /// Password checks per client address in a window, not counting the right ones.
    pub per_address: u32,
    /// How long a failure counts.
    pub window: Duration,
    /// How long an attempt under way counts before it is settled (default 30 s). The password
    /// check must end within it for the limits to hold; an attempt whose process died before
    /// settling it counts this long, and no longer.
    pub lease: Duration,
}

impl ThrottleLimits {
    /// Limits of `per_account` and `per_address` attempts per `window`, with a lease of 30 s.
    pub fn new(per_account: u32, per_address: u32, window: Duration) -> Self {
        Self {
            per_account,
            per_address,
            window,
            lease: Duration::from_secs(30),
        }
    }

    /// The same limits with attempts under way counting for at most `lease`.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
}

/// A login refused: try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Throttled {
    /// Why it was refused.
    pub cause: ThrottleCause,
    /// How long until the log that refused has room again: until its first failure stops
    /// counting, or its first lease ends (an upper bound: most checks settle in well under a
    /// second). Where both logs refused, the longer wait of the weightier cause.
    pub retry_after: Duration,
}

/// What filled the log that refused a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ThrottleCause {
    /// Other attempts whose passwords are being checked (with failures, if any): the login
    /// may go ahead once they are settled. A user's own parallel logins can meet this.
    UnderWay,
    /// Failures alone: no login goes ahead until the first of them stops counting.
    Failures,
}

/// Logs of login attempts in the store's Redis, under its key prefix.
///
/// What it protects against: guessing one account's password (the per-account limit), and one
/// address guessing many accounts' (the per-address limit). What it does not: guessing spread
/// over many addresses and accounts at once (a botnet trying one password per account): that
/// needs signals beyond a counter (breached-password checks, second factors). And since anyone
/// may fail logins for any account, the per-account limit lets an attacker lock a real user
/// out for a window at a time: keep it high enough that the user rarely meets it by mistake
/// and the window short (minutes), so that what the attacker buys is a few minutes of delay
/// per window, at the price of `limit` guesses that each may be seen.
///
/// ```no_run
/// use std::{net::IpAddr, time::Duration};
///
/// use session_store::{RedisSessionStore, ThrottleLimits};
///
/// # fn check_password(user: &str, password: &str) -> bool { false }
/// # async fn login(store: RedisSessionStore, user: &str, password: &str, ip: IpAddr)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// let throttle = store.login_throttle(ThrottleLimits::new(5, 50, Duration::from_secs(300)));
/// let attempt = match throttle.attempt(user, ip).await? {
///     Ok(attempt) => attempt,
///     // Answer 429 with Retry-After (throttled.retry_after, or a second when only attempts
///     // under way filled the log: throttled.cause), and check no password.
///     Err(throttled) => return Ok(()),
/// };
/// if check_password(user, password) {
///     attempt.succeeded().await?;
///     // Sign the user in.
/// } else {
///     attempt.failed().await?;
///     // Answer 401.
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    handle: Arc<Handle>,
    limits: ThrottleLimits,
}

/// An attempt taken in both logs: its password may be checked now. Say how the check went,
/// so that what should not count is given back: [`succeeded`](Self::succeeded),
/// [`failed`](Self::failed) or [`not_checked`](Self::not_checked). Dropped without any (the
/// request was cancelled), it counts until its lease ends.
#[derive(Debug)]
#[must_use = "say how the password check went: succeeded, failed or not_checked"]
pub struct LoginAttempt<'a> {
    throttle: &'a LoginThrottle,
    id: String,
    account: String,
    address: String,
}

impl LoginThrottle {
    /// A throttle with `limits`, on the store's Redis: see `RedisSessionStore::login_throttle`.
    pub(crate) fn new(handle: Arc<Handle>, limits: ThrottleLimits) -> Self {
        Self { handle, limits }
    }

    /// Takes an attempt for `account` from `address`, before its password is checked:
    /// `Err(Throttled)` when either log is at its limit, and then neither counts it.
    /// One round trip (a script per log, sent together).
    ///
    /// # Errors
    /// The [`StoreError`] of a round trip.
    pub async fn attempt(
        &self,
        account: &str,
        address: IpAddr,
    ) -> Result<Result<LoginAttempt<'_>, Throttled>, StoreError> {
        let attempt = LoginAttempt {
            throttle: self,
            id: format!("{:016x}", rand::random::<u64>()),
            account: key::throttle_counter(self.prefix(), "a", account),
            address: key::throttle_counter(self.prefix(), "ip", &address.to_string()),
        };
        let taking = async {
            let (by_account, by_address) = try_join(
                self.take(&attempt, &attempt.account, self.limits.per_account),
                self.take(&attempt, &attempt.address, self.limits.per_address),
            )
            .await?;
            let taken = [
                (by_account, &attempt.account),
                (by_address, &attempt.address),
            ];
            let Some(refused) = by_account.max(by_address) else {
                return Ok(None);
            };
            // Where one log refused, the other's attempt goes back: nothing was checked.
            let give_back = taken
                .iter()
                .filter(|(refusal, _)| refusal.is_none())
                .map(|(_, log)| attempt.settle(log, "given_back"));
            try_join_all(give_back).await?;
            Ok(Some(refused))
        };
        let refused = self.operation(taking).await?;
        Ok(refused.map_or(Ok(attempt), Err))
    }

    /// `attempt` in the log at `log` unless it is at `limit` (taken as 1 when it is 0: a limit
    /// of none would refuse without a failure to wait for); when it is, why and how long.
    async fn take(
        &self,
        attempt: &LoginAttempt<'_>,
        log: &str,
        limit: u32,
    ) -> Result<Option<Throttled>, StoreError> {
        let (refused, left): (u8, u64) = self
            .run(&THROTTLE_TAKE, log, |cmd| {
                cmd.arg(limit.max(1))
                    .arg(&attempt.id)
                    .arg(millis(self.limits.lease).max(1))
                    .arg(millis(self.limits.window).max(1));
            })
            .await?;
        let cause = match refused {
            0 => return Ok(None),
            1 => ThrottleCause::Failures,
            _ => ThrottleCause::UnderWay,
        };
        Ok(Some(Throttled {
            cause,
            retry_after: Duration::from_millis(left),
        }))
    }

    /// `script` on `log`.
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &LuaScript,
        log: &str,
        args: impl Fn(&mut redis::Cmd),
    ) -> Result<T, StoreError> {
        self.handle.backend().run_script(script, &log, args).await
    }

    /// `work` (a call of the throttle: its scripts) as one operation of the store.
    async fn operation<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.handle
            .run(Operation::LoginThrottle, work, |_| Outcome::Ok)
            .await
    }

    fn prefix(&self) -> &str {
        &self.handle.config().key_prefix
    }
}

impl LoginAttempt<'_> {
    /// The password was right: clears the account's failures and gives the address its
    /// attempt back (many people signing in from one address is no attack). One round trip.
    ///
    /// # Errors
    /// The [`StoreError`] of a round trip.
    pub async fn succeeded(self) -> Result<(), StoreError> {
        self.settle_both("cleared", "given_back").await
    }

    /// The password was wrong: the attempt counts as a failure in both logs for a window from
    /// now. One round trip.
    ///
    /// # Errors
    /// The [`StoreError`] of a round trip.
    pub async fn failed(self) -> Result<(), StoreError> {
        self.settle_both("failed", "failed").await
    }

    /// The password was never checked (the app turned the login away for another reason,
    /// say its password checks are saturated): both logs get the attempt back. One round
    /// trip.
    ///
    /// # Errors
    /// The [`StoreError`] of a round trip.
    pub async fn not_checked(self) -> Result<(), StoreError> {
        self.settle_both("given_back", "given_back").await
    }

    /// Settles the attempt in the account's log as `account` says and in the address's as
    /// `address` says, both in one round trip.
    async fn settle_both(&self, account: &str, address: &str) -> Result<(), StoreError> {
        let both = try_join(
            self.settle(&self.account, account),
            self.settle(&self.address, address),
        );
        self.throttle.operation(both).await?;
        Ok(())
    }

    async fn settle(&self, log: &str, outcome: &str) -> Result<(), StoreError> {
        let window = millis(self.throttle.limits.window).max(1);
        self.throttle
            .run::<i64>(&THROTTLE_SETTLE, log, |cmd| {
                cmd.arg(&self.id).arg(outcome).arg(window);
            })
            .await
            .map(drop)
    }
}

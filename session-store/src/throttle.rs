//! Login throttling shared by every instance: counters of password checks per account and per
//! client address, kept in Redis, so that spreading guesses over instances gains an attacker
//! nothing.
//!
//! A login takes an attempt from both counters *before* its password is checked, in one step
//! with the test of the limit (a script per counter), so that however many logins arrive at
//! once on however many instances, at most `limit` passwords are checked per window. A right
//! password clears the account's counter and gives the address its attempt back; a password
//! never checked gives both back; a wrong one stays counted until the window ends. Each
//! counter's window starts at the first attempt it counts and ends by itself (the key's
//! expiry).

use std::{net::IpAddr, time::Duration};

use futures_util::future::{try_join, try_join_all};

use crate::{
    RedisSessionStore, StoreError,
    batch::Batch,
    clock::millis,
    key,
    scripts::{LuaScript, THROTTLE_GIVE_BACK, THROTTLE_TAKE},
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
    /// How long a window lasts, from the first attempt it counts.
    pub window: Duration,
}

impl ThrottleLimits {
    /// Limits of `per_account` and `per_address` attempts per `window`.
    pub fn new(per_account: u32, per_address: u32, window: Duration) -> Self {
        Self {
            per_account,
            per_address,
            window,
        }
    }
}

/// A login refused for too many attempts: try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// What is left of the window that is at its limit (of the longer one, when both are).
    pub retry_after: Duration,
}

/// Counters of failed logins in the store's Redis, under its key prefix.
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
///     // Answer 429 with Retry-After: throttled.retry_after, and check no password.
///     Err(throttled) => return Ok(()),
/// };
/// if check_password(user, password) {
///     attempt.succeeded().await?;
///     // Sign the user in.
/// } else {
///     attempt.failed();
///     // Answer 401.
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    store: RedisSessionStore,
    limits: ThrottleLimits,
}

/// An attempt taken from both counters: its password may be checked now. Say how the check
/// went, so that what should not count is given back: [`succeeded`](Self::succeeded),
/// [`failed`](Self::failed) or [`not_checked`](Self::not_checked). Dropped without any (the
/// request was cancelled), it stays counted, like a failure, until its window ends.
#[derive(Debug)]
#[must_use = "say how the password check went: succeeded, failed or not_checked"]
pub struct LoginAttempt<'a> {
    throttle: &'a LoginThrottle,
    account: String,
    address: String,
}

impl RedisSessionStore {
    /// A login throttle with `limits`, on this store's Redis.
    pub fn login_throttle(&self, limits: ThrottleLimits) -> LoginThrottle {
        LoginThrottle {
            store: self.clone(),
            limits,
        }
    }
}

impl LoginThrottle {
    /// Takes an attempt for `account` from `address`, before its password is checked:
    /// `Err(Throttled)` when either counter is at its limit, and then neither counts it.
    /// One round trip (a script per counter, sent together).
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
            account: key::throttle_counter(self.prefix(), "a", account),
            address: key::throttle_counter(self.prefix(), "ip", &address.to_string()),
        };
        let (by_account, by_address) = try_join(
            self.take(&attempt.account, self.limits.per_account),
            self.take(&attempt.address, self.limits.per_address),
        )
        .await?;
        // Where one counter refused, the other's attempt goes back: nothing was checked.
        let taken = [
            (by_account, &attempt.account),
            (by_address, &attempt.address),
        ];
        if taken.iter().all(|(refused, _)| refused.is_none()) {
            return Ok(Ok(attempt));
        }
        let give_back = taken
            .iter()
            .filter(|(refused, _)| refused.is_none())
            .map(|(_, counter)| self.give_back(counter));
        try_join_all(give_back).await?;
        let retry_after = by_account.max(by_address).unwrap_or(self.limits.window);
        Ok(Err(Throttled { retry_after }))
    }

    /// One attempt from the counter at `counter` unless it is at `limit`; when it is, what is
    /// left of its window.
    async fn take(&self, counter: &str, limit: u32) -> Result<Option<Duration>, StoreError> {
        let left: i64 = self
            .run(&THROTTLE_TAKE, counter, |cmd| {
                cmd.arg(limit).arg(millis(self.limits.window).max(1));
            })
            .await?;
        Ok(u64::try_from(left).ok().map(Duration::from_millis))
    }

    async fn give_back(&self, counter: &str) -> Result<(), StoreError> {
        self.run::<i64>(&THROTTLE_GIVE_BACK, counter, |_| {})
            .await
            .map(drop)
    }

    /// `script` on `counter`, within the store's deadline.
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &LuaScript,
        counter: &str,
        args: impl Fn(&mut redis::Cmd),
    ) -> Result<T, StoreError> {
        let backend = self.store.backend();
        backend
            .within_deadline(backend.run_script(script, &counter, args))
            .await
    }

    fn prefix(&self) -> &str {
        &self.store.config().key_prefix
    }
}

impl LoginAttempt<'_> {
    /// The password was right: clears the account's counter and gives the address its attempt
    /// back (many people signing in from one address is no attack). One round trip.
    ///
    /// # Errors
    /// The [`StoreError`] of a round trip.
    pub async fn succeeded(self) -> Result<(), StoreError> {
        let throttle = self.throttle;
        let backend = throttle.store.backend();
        let mut clear = Batch::new();
        clear.cmd("DEL").arg(&self.account).ignore();
        try_join(
            backend.within_deadline(backend.write::<()>(clear)),
            throttle.give_back(&self.address),
        )
        .await?;
        Ok(())
    }

    /// The password was wrong: the attempt stays counted until its window ends. No round trip.
    pub fn failed(self) {}

    /// The password was never checked (the app turned the login away for another reason,
    /// say its password checks are saturated): both counters get the attempt back. One round
    /// trip.
    ///
    /// # Errors
    /// The [`StoreError`] of a round trip.
    pub async fn not_checked(self) -> Result<(), StoreError> {
        let throttle = self.throttle;
        try_join(
            throttle.give_back(&self.account),
            throttle.give_back(&self.address),
        )
        .await?;
        Ok(())
    }
}

//! Login throttling shared by every instance: counters of failed logins per account and per
//! client address, kept in Redis, so that spreading guesses over instances gains an attacker
//! nothing.
//!
//! Each counter counts the failures of a fixed window that starts at the first failure and
//! ends by itself (the key's expiry). Past a limit, a login is refused before its password is
//! checked, until the window ends.

use std::{net::IpAddr, time::Duration};

use futures_util::future::try_join;

use crate::{RedisSessionStore, StoreError, batch::Batch, clock::millis, key};

/// How many failed logins a window allows, and how long a window lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThrottleLimits {
    /// Failed logins allowed per account in a window.
    pub per_account: u32,
    /// Failed logins allowed per client address in a window.
    pub per_address: u32,
    /// How long a window lasts, from its first failure.
    pub window: Duration,
}

impl ThrottleLimits {
    /// Limits of `per_account` and `per_address` failures per `window`.
    pub fn new(per_account: u32, per_address: u32, window: Duration) -> Self {
        Self {
            per_account,
            per_address,
            window,
        }
    }
}

/// A login refused for too many failures: try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// What is left of the window that is over its limit.
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
/// # async fn login(store: RedisSessionStore, user: &str, ip: IpAddr, password_ok: bool)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// let throttle = store.login_throttle(ThrottleLimits::new(5, 50, Duration::from_secs(300)));
/// if let Err(throttled) = throttle.check(user, ip).await? {
///     // Answer 429 with Retry-After: throttled.retry_after, before checking the password.
/// # return Ok(());
/// }
/// if password_ok {
///     throttle.succeeded(user).await?;
/// } else {
///     throttle.failed(user, ip).await?;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    store: RedisSessionStore,
    limits: ThrottleLimits,
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
    /// Whether a login for `account` from `address` may go on: `Err(Throttled)` when either is
    /// over its limit. One round trip per counter, sent together.
    ///
    /// # Errors
    /// The [`StoreError`] of a round trip.
    pub async fn check(
        &self,
        account: &str,
        address: IpAddr,
    ) -> Result<Result<(), Throttled>, StoreError> {
        let (account, address) = try_join(
            self.over(&self.account_key(account), self.limits.per_account),
            self.over(&self.address_key(address), self.limits.per_address),
        )
        .await?;
        Ok(match account.max(address) {
            Some(retry_after) => Err(Throttled { retry_after }),
            None => Ok(()),
        })
    }

    /// Counts a failed login for `account` from `address`.
    ///
    /// # Errors
    /// The [`StoreError`] of a round trip.
    pub async fn failed(&self, account: &str, address: IpAddr) -> Result<(), StoreError> {
        try_join(
            self.count(&self.account_key(account)),
            self.count(&self.address_key(address)),
        )
        .await?;
        Ok(())
    }

    /// Clears `account`'s failures after a successful login (its address's stay counted).
    ///
    /// # Errors
    /// The [`StoreError`] of the round trip.
    pub async fn succeeded(&self, account: &str) -> Result<(), StoreError> {
        let backend = self.store.backend();
        let key = self.account_key(account);
        backend
            .within_deadline(backend.query::<()>(redis::cmd("DEL").arg(key)))
            .await
    }

    /// What is left of the window of the counter at `key` when it is at `limit` or more.
    async fn over(&self, key: &str, limit: u32) -> Result<Option<Duration>, StoreError> {
        let mut pipe = Batch::new();
        pipe.cmd("GET").arg(key);
        pipe.cmd("PTTL").arg(key);
        let backend = self.store.backend();
        let (count, ttl): (Option<u32>, i64) =
            backend.within_deadline(backend.query(&pipe)).await?;
        let left = u64::try_from(ttl).map_or(self.limits.window, Duration::from_millis);
        Ok((count.unwrap_or(0) >= limit).then_some(left))
    }

    /// One more failure on the counter at `key`, whose window starts with its first.
    async fn count(&self, key: &str) -> Result<(), StoreError> {
        let mut pipe = Batch::new();
        pipe.cmd("INCR").arg(key).ignore();
        pipe.cmd("PEXPIRE")
            .arg(key)
            .arg(millis(self.limits.window))
            .arg("NX")
            .ignore();
        let backend = self.store.backend();
        backend.within_deadline(backend.query::<()>(&pipe)).await
    }

    fn account_key(&self, account: &str) -> String {
        key::throttle_counter(&self.store.config().key_prefix, "a", account)
    }

    fn address_key(&self, address: IpAddr) -> String {
        key::throttle_counter(&self.store.config().key_prefix, "ip", &address.to_string())
    }
}

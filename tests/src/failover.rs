//! A steady stream of logins, reads, writes, logouts and revocations through the store, for
//! the tests that kill or demote a primary under it, and what it says afterwards: the requests
//! it sent and how they ended, whether every login and write it saw acknowledged is still
//! there, and whether every session whose end it saw acknowledged is still gone.
//!
//! Two sides share the load: a plain store, and one whose writes wait for a replica
//! (`min_replica_acks`), so that a test can tell what `WAIT` buys.

use std::{
    cell::RefCell,
    time::{Duration, Instant},
};

use actix_web::{
    cookie::{Cookie, Key},
    http::Method,
};

use session_store::{RedisSessionStore, RedisSessionStoreBuilder};

use crate::session_app::{
    Gate, MiddlewareMode, TestApp, get_entry, redis_key, send, session_cookie, session_key_in,
    tracked_app,
};

/// How long a client waits after a `503`, as `Retry-After` asks (in part).
const BACKOFF: Duration = Duration::from_millis(100);

/// One store under load: a test app on it, its key prefix, and whether its writes wait for a
/// replica.
pub struct Side<A> {
    /// The app.
    pub app: A,
    /// The store's key prefix.
    pub prefix: &'static str,
    /// Whether the store was built with `min_replica_acks`.
    pub durable: bool,
    /// Whether the load revokes sessions of this side (its store keeps a users' index).
    pub revoking: bool,
}

/// The two sides a failover test loads: a plain store under the prefix `plain:`, and one
/// under `durable:` whose writes wait for a replica (`WAIT 1`, 500 ms); `build` makes a store of
/// the deployment from a builder. With `revoking`, the stores keep a users' index
/// (`user_entry`) and the load revokes sessions as well as logging out of them; a test that
/// tells shards apart leaves it off, since a revocation reads the user's index, which lives on
/// a shard of its own. Every login of the load is alice's, thousands of them, so the index has
/// no cap on her sessions here: a cap would end the oldest, which the load reads as lost.
pub async fn sides(
    key: &Key,
    revoking: bool,
    build: &dyn Fn(RedisSessionStoreBuilder) -> RedisSessionStore,
) -> (Side<impl TestApp + use<>>, Side<impl TestApp + use<>>) {
    let mode = MiddlewareMode::COOKIE_MODES[0].clone();
    let indexed = |builder: RedisSessionStoreBuilder| {
        if revoking {
            builder.user_entry("user").max_sessions_per_user(usize::MAX)
        } else {
            builder
        }
    };
    let plain = build(indexed(RedisSessionStore::builder().key_prefix("plain:")));
    let durable = build(indexed(
        RedisSessionStore::builder()
            .key_prefix("durable:")
            .min_replica_acks(1, Duration::from_millis(500)),
    ));
    (
        Side {
            app: tracked_app(plain, key, mode.clone(), Gate::default()).await,
            prefix: "plain:",
            durable: false,
            revoking,
        },
        Side {
            app: tracked_app(durable, key, mode, Gate::default()).await,
            prefix: "durable:",
            durable: true,
            revoking,
        },
    )
}

/// One request: when it was sent, for which session, how it ended.
#[derive(Debug, Clone)]
pub struct Record {
    /// When it was sent.
    pub sent: Instant,
    /// When its answer came.
    pub answered: Instant,
    /// Its status.
    pub status: u16,
    /// The Redis key of the session it used; `None` for a login that failed (its session was
    /// never made).
    pub redis_key: Option<String>,
    /// Whether it went to the side whose writes wait for a replica.
    pub durable: bool,
}

/// A session a login acknowledged, and the writes to it.
#[derive(Debug)]
pub struct Session {
    /// Its cookie.
    pub cookie: Cookie<'static>,
    /// Its Redis key.
    pub redis_key: String,
    /// Whether its store waits for a replica.
    pub durable: bool,
    /// When the login was sent that was acknowledged.
    pub login_sent: Instant,
    /// The last value of its `step` entry acknowledged, and when it was sent.
    pub last_write: Option<(u64, Instant)>,
    /// Values written since without an acknowledgement (which may or may not have landed).
    pub unacknowledged: Vec<u64>,
}

/// A session whose logout (`POST /purge`) or revocation (`POST /revoke/{reference}`) was
/// acknowledged: it must stay gone.
#[derive(Debug)]
pub struct Logout {
    /// The session's cookie, as it was before the logout.
    pub cookie: Cookie<'static>,
    /// Its Redis key.
    pub redis_key: String,
    /// Whether its store waits for a replica.
    pub durable: bool,
    /// When the logout was sent.
    pub sent: Instant,
}

/// The load: what its clients sent, the sessions they were acknowledged, and the logouts.
pub struct Load {
    key: Key,
    records: RefCell<Vec<Record>>,
    sessions: RefCell<Vec<Session>>,
    logouts: RefCell<Vec<Logout>>,
    checked_logouts: RefCell<Vec<(Logout, bool)>>,
}

impl Load {
    /// Records a request sent at `sent` and answered now with `status`, of the session at
    /// `redis_key`, to the durable side or not.
    fn record(&self, sent: Instant, status: u16, redis_key: Option<String>, durable: bool) {
        self.records.borrow_mut().push(Record {
            sent,
            answered: Instant::now(),
            status,
            redis_key,
            durable,
        });
    }

    /// A load whose apps encrypt cookies with `key`.
    pub fn new(key: Key) -> Self {
        Self {
            key,
            records: RefCell::default(),
            sessions: RefCell::default(),
            logouts: RefCell::default(),
            checked_logouts: RefCell::default(),
        }
    }

    /// One client on `side` until `until`: logs in, reads, writes its `step` entry, now and
    /// then leaves its session for a new login, or logs out (every other time).
    pub async fn client<A: TestApp>(&self, number: usize, side: &Side<A>, until: Instant) {
        self.client_while(number, side, || Instant::now() < until)
            .await;
    }

    /// The same client, for as long as `running` says (asked before each request): for a
    /// test whose fault takes as long as it takes.
    pub async fn client_while<A: TestApp>(
        &self,
        number: usize,
        side: &Side<A>,
        running: impl Fn() -> bool,
    ) {
        self.run(number, side, &running, None).await;
    }

    /// A client on `side` until `until` that logs in until its session's Redis key is one
    /// `keep` accepts (the others are left at once, and checked like any other), then reads
    /// and writes that session to the end, never logging in again: for a test that must see
    /// requests on some slots all along (the shards that a fault should not touch), whatever
    /// becomes of the others.
    pub async fn client_keeping<A: TestApp>(
        &self,
        number: usize,
        side: &Side<A>,
        until: Instant,
        keep: impl Fn(&str) -> bool,
    ) {
        self.run(number, side, &|| Instant::now() < until, Some(&keep))
            .await;
    }

    async fn run<A: TestApp>(
        &self,
        number: usize,
        side: &Side<A>,
        running: &dyn Fn() -> bool,
        keep: Option<&dyn Fn(&str) -> bool>,
    ) {
        let mut session: Option<Session> = None;
        let mut step = number as u64;
        while running() {
            step += 1;
            let Some(current) = &mut session else {
                session = self.log_in(side).await;
                match &session {
                    None => tokio::time::sleep(BACKOFF).await,
                    Some(new) if keep.is_some_and(|keep| !keep(&new.redis_key)) => {
                        self.sessions.borrow_mut().extend(session.take());
                    }
                    Some(_) => {}
                }
                continue;
            };
            if keep.is_none() && step.is_multiple_of(20) {
                let ending = session.take().expect("a session");
                match step / 20 % 3 {
                    0 => self.sessions.borrow_mut().push(ending),
                    1 => self.end(side, ending, "/purge".to_owned()).await,
                    _ if !side.revoking => self.end(side, ending, "/purge".to_owned()).await,
                    _ => {
                        let revoke = format!("/revoke/{}", reference(&ending.redis_key));
                        self.end(side, ending, revoke).await;
                    }
                }
                continue;
            }
            let write = step.is_multiple_of(4);
            let (method, path) = if write {
                (Method::POST, format!("/set/step/{step}"))
            } else {
                (Method::GET, "/get/user".to_owned())
            };
            let sent = Instant::now();
            let status = send(&side.app, method, &path, Some(&current.cookie))
                .await
                .status()
                .as_u16();
            self.record(sent, status, Some(current.redis_key.clone()), side.durable);
            match (write, status) {
                (true, 200) => {
                    current.last_write = Some((step, sent));
                    current.unacknowledged.clear();
                }
                (true, _) => current.unacknowledged.push(step),
                _ => {}
            }
            if status == 503 {
                tokio::time::sleep(BACKOFF).await;
            }
        }
        self.sessions.borrow_mut().extend(session);
    }

    async fn log_in<A: TestApp>(&self, side: &Side<A>) -> Option<Session> {
        let sent = Instant::now();
        let response = send(&side.app, Method::POST, "/set/user/alice", None).await;
        let status = response.status().as_u16();
        let session = (status == 200).then(|| {
            let cookie = session_cookie(&response).expect("a session cookie");
            let redis_key = redis_key(side.prefix, &session_key_in(&cookie, &self.key));
            Session {
                cookie,
                redis_key,
                durable: side.durable,
                login_sent: sent,
                last_write: None,
                unacknowledged: Vec::new(),
            }
        });
        self.record(
            sent,
            status,
            session.as_ref().map(|session| session.redis_key.clone()),
            side.durable,
        );
        session
    }

    /// Ends `session` with `POST path`: a logout (`/purge`) or a revocation of itself
    /// (`/revoke/{reference}`, acknowledged when it says it revoked one). Acknowledged, the
    /// session must stay gone; otherwise it may or may not be, and is checked neither way.
    async fn end<A: TestApp>(&self, side: &Side<A>, session: Session, path: String) {
        let sent = Instant::now();
        let response = send(&side.app, Method::POST, &path, Some(&session.cookie)).await;
        let mut status = response.status().as_u16();
        let body = actix_web::test::read_body(response).await;
        if path.starts_with("/revoke/") && status == 200 && body != "true" {
            // Answered, but nothing revoked: not an acknowledged end.
            status = 0;
        }
        self.record(sent, status, Some(session.redis_key.clone()), side.durable);
        if status == 200 {
            self.logouts.borrow_mut().push(Logout {
                cookie: session.cookie,
                redis_key: session.redis_key,
                durable: side.durable,
                sent,
            });
        } else if status == 503 {
            tokio::time::sleep(BACKOFF).await;
        }
    }

    /// The requests sent, in the order they were answered.
    pub fn take_records(&self) -> Vec<Record> {
        self.records.take()
    }

    /// Checks every acknowledged session through its side's app: `(session, its login is
    /// lost, its last acknowledged write is lost)`; and every acknowledged logout: its session
    /// must not be back. Panics when one whose logout was acknowledged with `WAIT` is back;
    /// prints how many are back on either side (see [`take_checked_logouts`](Self::take_checked_logouts)).
    pub async fn check<A: TestApp, B: TestApp>(
        &self,
        plain: &Side<A>,
        durable: &Side<B>,
    ) -> Vec<(Session, bool, bool)> {
        let mut checked = Vec::new();
        for session in self.sessions.take() {
            let (user, step) = if session.durable {
                read_back(&durable.app, &session.cookie).await
            } else {
                read_back(&plain.app, &session.cookie).await
            };
            let login_lost = user != "alice";
            let write_lost = session.last_write.is_some_and(|(acknowledged, _)| {
                step.parse::<u64>().is_ok_and(|stored| {
                    stored != acknowledged && !session.unacknowledged.contains(&stored)
                }) || step == "none"
            });
            checked.push((session, login_lost, write_lost));
        }
        let mut back = [(0, 0); 2];
        for logout in self.logouts.take() {
            let user = if logout.durable {
                get_entry(&durable.app, "user", Some(&logout.cookie)).await
            } else {
                get_entry(&plain.app, "user", Some(&logout.cookie)).await
            };
            let came_back = user != "none";
            let counts = &mut back[usize::from(logout.durable)];
            counts.0 += 1;
            counts.1 += usize::from(came_back);
            self.checked_logouts.borrow_mut().push((logout, came_back));
        }
        let [(plain_logouts, plain_back), (durable_logouts, durable_back)] = back;
        println!(
            "logouts and revocations acknowledged without WAIT: {plain_logouts}, sessions back \
             after: {plain_back}; \
             with WAIT: {durable_logouts}, back after: {durable_back}"
        );
        assert_eq!(
            durable_back, 0,
            "sessions whose logout was acknowledged with WAIT came back"
        );
        checked
    }

    /// The logouts [`check`](Self::check) checked: `(logout, its session is back)`.
    pub fn take_checked_logouts(&self) -> Vec<(Logout, bool)> {
        self.checked_logouts.take()
    }
}

/// The reference of the session at `redis_key` (`{prefix}s:{digest}`): the first 12
/// characters of its digest, as the store's listing shows it.
fn reference(redis_key: &str) -> &str {
    let digest = redis_key.rsplit(':').next().expect("a session key");
    &digest[..12]
}

async fn read_back(app: &impl TestApp, cookie: &Cookie<'static>) -> (String, String) {
    (
        get_entry(app, "user", Some(cookie)).await,
        get_entry(app, "step", Some(cookie)).await,
    )
}

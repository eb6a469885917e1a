//! A steady stream of logins, reads and writes through the store, for the tests that kill or
//! demote a primary under it, and what it says afterwards: the requests it sent and how they
//! ended, and whether every login and write it saw acknowledged is still there.
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
}

/// The two sides a failover test loads: a plain store under the prefix `plain:`, and one
/// under `durable:` whose writes wait for a replica (`WAIT 1`, 500 ms); `build` makes a store of
/// the deployment from a builder.
pub async fn sides(
    key: &Key,
    build: &dyn Fn(RedisSessionStoreBuilder) -> RedisSessionStore,
) -> (Side<impl TestApp + use<>>, Side<impl TestApp + use<>>) {
    let mode = MiddlewareMode::COOKIE_MODES[0].clone();
    let plain = build(RedisSessionStore::builder().key_prefix("plain:"));
    let durable = build(
        RedisSessionStore::builder()
            .key_prefix("durable:")
            .min_replica_acks(1, Duration::from_millis(500)),
    );
    (
        Side {
            app: tracked_app(plain, key, mode.clone(), Gate::default()).await,
            prefix: "plain:",
            durable: false,
        },
        Side {
            app: tracked_app(durable, key, mode, Gate::default()).await,
            prefix: "durable:",
            durable: true,
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

/// The load: what its clients sent and the sessions they were acknowledged.
pub struct Load {
    key: Key,
    records: RefCell<Vec<Record>>,
    sessions: RefCell<Vec<Session>>,
}

impl Load {
    /// A load whose apps encrypt cookies with `key`.
    pub fn new(key: Key) -> Self {
        Self {
            key,
            records: RefCell::default(),
            sessions: RefCell::default(),
        }
    }

    /// One client on `side` until `until`: logs in, reads, writes its `step` entry, now and
    /// then leaves its session for a new login.
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
        let mut session: Option<Session> = None;
        let mut step = number as u64;
        while running() {
            step += 1;
            let Some(current) = &mut session else {
                session = self.log_in(side).await;
                if session.is_none() {
                    tokio::time::sleep(BACKOFF).await;
                }
                continue;
            };
            if step.is_multiple_of(20) {
                self.sessions.borrow_mut().extend(session.take());
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
            self.records.borrow_mut().push(Record {
                sent,
                answered: Instant::now(),
                status,
                redis_key: Some(current.redis_key.clone()),
                durable: side.durable,
            });
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
        self.records.borrow_mut().push(Record {
            sent,
            answered: Instant::now(),
            status,
            redis_key: session.as_ref().map(|session| session.redis_key.clone()),
            durable: side.durable,
        });
        session
    }

    /// The requests sent, in the order they were answered.
    pub fn take_records(&self) -> Vec<Record> {
        self.records.take()
    }

    /// Checks every acknowledged session through its side's app: `(session, its login is
    /// lost, its last acknowledged write is lost)`.
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
        checked
    }
}

async fn read_back(app: &impl TestApp, cookie: &Cookie<'static>) -> (String, String) {
    (
        get_entry(app, "user", Some(cookie)).await,
        get_entry(app, "step", Some(cookie)).await,
    )
}

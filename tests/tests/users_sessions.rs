//! A user's sessions: listed, revoked one by one or all at once, with an index in Redis that
//! never keeps an ended session; lifecycle events over pub/sub; a login throttle shared by
//! every instance. Stamped per topology, as the acceptance suite is.

use std::{
    net::IpAddr,
    time::{Duration, Instant, SystemTime},
};

use actix_session::config::{CookieContentSecurity, TtlExtensionPolicy};
use actix_web::{
    cookie::{Cookie, Key},
    http::Method,
};
use futures_util::StreamExt as _;
use integration_tests::{
    CapturedLogs,
    deployment::{AnyConnection, Deployment, unique_prefix},
    session_app::{
        Gate, MiddlewareMode, TestApp, bare_app, get_entry, redis_key, send, session_cookie,
        session_key_in, tracked_app,
    },
};
use redis::AsyncCommands as _;
use serde_json::Value;
use session_store::{
    LoginAttempt, LoginThrottle, RedisSessionStore, RedisSessionStoreBuilder, SessionEventKind,
    SessionEvents, SessionNotice, ThrottleCause, ThrottleLimits, Throttled,
};

/// A deployment, a prefix of this test's own, and an app on a store that names `user`.
struct Fixture {
    deployment: Deployment,
    prefix: String,
    key: Key,
    gate: Gate,
}

impl Fixture {
    fn on(deployment: Deployment) -> Self {
        Self {
            deployment,
            prefix: unique_prefix(),
            key: Key::generate(),
            gate: Gate::default(),
        }
    }

    fn builder(&self) -> RedisSessionStoreBuilder {
        RedisSessionStore::builder()
            .key_prefix(self.prefix.clone())
            .user_entry("user")
            .publish_events(true)
            .instance_label("test")
    }

    fn store(&self) -> RedisSessionStore {
        self.deployment.store_with(self.builder())
    }

    async fn app(&self) -> impl TestApp + use<> {
        let mode = MiddlewareMode {
            security: CookieContentSecurity::Private,
            policy: TtlExtensionPolicy::OnStateChanges,
        };
        tracked_app(self.store(), &self.key, mode, self.gate.clone()).await
    }

    /// An app behind `TrackChanges` on `store` (one of this fixture's, other settings).
    async fn app_on(&self, store: RedisSessionStore) -> impl TestApp + use<> {
        tracked_app(store, &self.key, Self::MODE, self.gate.clone()).await
    }

    /// An app behind actix-session's middleware alone, on this fixture's store.
    async fn bare_app(&self) -> impl TestApp + use<> {
        bare_app(self.store(), &self.key, Self::MODE, self.gate.clone()).await
    }

    const MODE: MiddlewareMode = MiddlewareMode {
        security: CookieContentSecurity::Private,
        policy: TtlExtensionPolicy::OnStateChanges,
    };

    async fn redis(&self) -> AnyConnection {
        self.deployment.connection().await
    }

    /// The key of alice's index, computed independently of the store.
    fn index_key(&self) -> String {
        format!(
            "{}u:{}",
            self.prefix,
            base64_sha256(&serde_json::to_string("alice").expect("JSON"))
        )
    }

    /// What alice's index holds, read straight from Redis.
    async fn index(&self) -> Vec<String> {
        self.redis()
            .await
            .zrange(self.index_key(), 0, -1)
            .await
            .expect("ZRANGE")
    }

    /// When alice's index expires (`PEXPIRETIME`: milliseconds since the epoch, `-1` for no
    /// expiry, `-2` for no key), and the latest end of life its entries are scored with.
    async fn index_expiry(&self) -> (i64, Option<u64>) {
        let mut redis = self.redis().await;
        let expires: i64 = redis::cmd("PEXPIRETIME")
            .arg(self.index_key())
            .query_async(&mut redis)
            .await
            .expect("PEXPIRETIME");
        let entries: Vec<(String, f64)> = redis
            .zrange_withscores(self.index_key(), 0, -1)
            .await
            .expect("ZRANGE WITHSCORES");
        let latest = entries
            .iter()
            .map(|(_, end)| {
                assert!(end.is_finite() && *end >= 0.0, "a score of {end}");
                *end as u64
            })
            .max();
        (expires, latest)
    }

    /// Creates (or changes) the ACL user `name` on every server of the deployment, with
    /// every command and key, then `rules` on top; the store of [`store_as`](Self::store_as)
    /// connects as that user.
    async fn acl_user(&self, name: &str, rules: &[&str]) {
        for client in self.deployment.clients() {
            let mut connection = client
                .get_multiplexed_async_connection()
                .await
                .expect("the server answers");
            let () = redis::cmd("ACL")
                .arg("SETUSER")
                .arg(name)
                .arg(&["on", ">acl-password", "~*", "&*", "+@all"][..])
                .arg(rules)
                .query_async(&mut connection)
                .await
                .expect("ACL SETUSER");
        }
    }

    /// The fixture's store, connecting as the ACL user `name`.
    fn store_as(&self, name: &str) -> RedisSessionStore {
        let url = |port: u16| format!("redis://{name}:acl-password@127.0.0.1:{port}");
        match &self.deployment {
            Deployment::Single(server) => self.builder().build_with_url(&url(server.port())),
            Deployment::Cluster(cluster) => self.builder().build_with_manager(
                session_store::Manager::cluster(
                    cluster
                        .nodes()
                        .iter()
                        .map(|node| url(node.port()))
                        .collect::<Vec<_>>(),
                )
                .expect("valid addresses"),
            ),
            Deployment::Sentinel(_) => {
                panic!("a store behind Sentinel takes no credentials for the data servers")
            }
        }
        .expect("valid loopback URLs")
    }

    /// The digest the index lists for the session of `cookie`.
    fn digest_of(&self, cookie: &Cookie<'static>) -> String {
        let key = redis_key(&self.prefix, &session_key_in(cookie, &self.key));
        key.rsplit_once("s:").expect("a session key").1.to_owned()
    }
}

fn base64_sha256(text: &str) -> String {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    use sha2::{Digest as _, Sha256};
    URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

async fn log_in(app: &impl TestApp, user: &str) -> Cookie<'static> {
    let response = send(app, Method::POST, &format!("/login/{user}"), None).await;
    assert_eq!(response.status(), 200);
    session_cookie(&response).expect("a session cookie")
}

async fn listed(app: &impl TestApp, cookie: &Cookie<'static>) -> Vec<Value> {
    let response = send(app, Method::GET, "/sessions", Some(cookie)).await;
    assert_eq!(response.status(), 200);
    let body = actix_web::test::read_body(response).await;
    serde_json::from_slice(&body).expect("JSON")
}

async fn answer(app: &impl TestApp, path: &str, cookie: &Cookie<'static>) -> String {
    let response = send(app, Method::POST, path, Some(cookie)).await;
    assert_eq!(response.status(), 200, "{path}");
    String::from_utf8(actix_web::test::read_body(response).await.to_vec()).expect("UTF-8")
}

/// Logs in (as `probe1`, `probe2`...) until an event published after `events` subscribed
/// reaches it, which says the subscription is live; and gives that event, with its login.
/// Fails, rather than waiting for ever, when no event comes within 15 seconds.
async fn until_live(
    app: &impl TestApp,
    events: &mut SessionEvents,
) -> (SessionNotice, Cookie<'static>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut probe = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "no event of {probe} logins reached the subscriber in 15 s: the subscription is broken"
        );
        probe += 1;
        let cookie = log_in(app, &format!("probe{probe}")).await;
        if let Ok(Some(notice)) =
            tokio::time::timeout(Duration::from_millis(200), events.next()).await
        {
            return (notice, cookie);
        }
    }
}

/// An attempt `throttle` must allow.
async fn take<'a>(throttle: &'a LoginThrottle, account: &str, address: IpAddr) -> LoginAttempt<'a> {
    throttle
        .attempt(account, address)
        .await
        .expect("attempt")
        .unwrap_or_else(|throttled| panic!("{account}: {throttled:?}"))
}

/// A failed login `throttle` must allow.
async fn fail(throttle: &LoginThrottle, account: &str, address: IpAddr) {
    take(throttle, account, address)
        .await
        .failed()
        .await
        .expect("failed");
}

/// The refusal of an attempt `throttle` must refuse.
async fn refused(throttle: &LoginThrottle, account: &str, address: IpAddr) -> Throttled {
    match throttle.attempt(account, address).await.expect("attempt") {
        Ok(_) => panic!("{account} from {address} was not throttled"),
        Err(throttled) => throttled,
    }
}

/// Milliseconds since the epoch.
fn epoch_millis(time: SystemTime) -> i64 {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch");
    i64::try_from(since.as_millis()).expect("a time of this era")
}

/// How much longer than its longest session a user's index may live: as long as the store
/// lets a session's creation time lie ahead of now (clocks of instances apart), 5 minutes by
/// default.
const INDEX_MARGIN_MILLIS: i64 = 5 * 60_000;

mod cases {
    use super::*;

    pub(super) async fn a_users_sessions_are_listed_and_revoked(fx: Fixture) {
        let app = fx.app().await;
        let a = log_in(&app, "alice").await;
        let b = log_in(&app, "alice").await;
        let c = log_in(&app, "alice").await;
        let bob = log_in(&app, "bob").await;

        let sessions = listed(&app, &a).await;
        assert_eq!(sessions.len(), 3, "{sessions:?}");
        let current: Vec<bool> = sessions.iter().map(|s| s["current"] == true).collect();
        assert_eq!(current.iter().filter(|c| **c).count(), 1, "{sessions:?}");
        let b_reference = fx.digest_of(&b)[..12].to_owned();
        assert!(
            sessions
                .iter()
                .any(|s| s["reference"] == b_reference.as_str())
        );

        assert_eq!(
            answer(&app, &format!("/revoke/{b_reference}"), &a).await,
            "true"
        );
        assert_eq!(get_entry(&app, "user", Some(&b)).await, "none", "revoked");
        assert_eq!(
            answer(&app, &format!("/revoke/{b_reference}"), &a).await,
            "false"
        );
        let bob_reference = fx.digest_of(&bob)[..12].to_owned();
        assert_eq!(
            answer(&app, &format!("/revoke/{bob_reference}"), &a).await,
            "false",
            "not alice's to revoke"
        );
        assert_eq!(listed(&app, &a).await.len(), 2);

        assert_eq!(answer(&app, "/revoke-others", &a).await, "1");
        assert_eq!(get_entry(&app, "user", Some(&c)).await, "none");
        assert_eq!(get_entry(&app, "user", Some(&a)).await, "alice", "kept");
        assert_eq!(fx.index().await, [fx.digest_of(&a)]);

        let store = fx.store();
        let everywhere = store.revoke_all(&"alice", None).await.expect("revoke_all");
        assert_eq!(everywhere, 1);
        assert_eq!(get_entry(&app, "user", Some(&a)).await, "none");
        assert!(fx.index().await.is_empty());
        assert_eq!(
            get_entry(&app, "user", Some(&bob)).await,
            "bob",
            "bob untouched"
        );
    }

    pub(super) async fn a_request_in_flight_during_a_revocation_leaves_nothing_behind(fx: Fixture) {
        let app = fx.app().await;
        let a = log_in(&app, "alice").await;
        let b = log_in(&app, "alice").await;
        let b_reference = fx.digest_of(&b)[..12].to_owned();

        let write = send(&app, Method::POST, "/gated-set/theme/dark", Some(&b));
        let revoke = async {
            fx.gate.wait_for(1).await;
            let revoked = answer(&app, &format!("/revoke/{b_reference}"), &a).await;
            fx.gate.open();
            revoked
        };
        let (write, revoked) = futures_util::join!(write, revoke);
        assert_eq!(revoked, "true");
        assert_eq!(write.status(), 200);
        let b_key = redis_key(&fx.prefix, &session_key_in(&b, &fx.key));
        let exists: bool = fx.redis().await.exists(&b_key).await.expect("EXISTS");
        assert!(!exists, "the write brought the revoked session back");
        assert_eq!(fx.index().await, [fx.digest_of(&a)]);
    }

    pub(super) async fn the_index_keeps_no_ended_session(fx: Fixture) {
        let app = fx.app().await;
        let kept = log_in(&app, "alice").await;
        let logged_out = log_in(&app, "alice").await;
        let renewed = log_in(&app, "alice").await;
        let expiring = log_in(&app, "alice").await;
        assert_eq!(fx.index().await.len(), 4);

        send(&app, Method::POST, "/purge", Some(&logged_out)).await;
        let renewal = send(&app, Method::POST, "/renew", Some(&renewed)).await;
        let renewed = session_cookie(&renewal).expect("a renewed cookie");
        let expiring_key = redis_key(&fx.prefix, &session_key_in(&expiring, &fx.key));
        let () = fx
            .redis()
            .await
            .pexpire(&expiring_key, 1)
            .await
            .expect("PEXPIRE");
        tokio::time::sleep(Duration::from_millis(50)).await;

        let mut expected = vec![
            fx.digest_of(&kept),
            fx.digest_of(&renewed),
            fx.digest_of(&expiring),
        ];
        let mut index = fx.index().await;
        expected.sort();
        index.sort();
        assert_eq!(index, expected, "logout and renewal leave at once");
        assert_eq!(
            listed(&app, &kept).await.len(),
            2,
            "the expired one is not listed"
        );
        let mut expected = vec![fx.digest_of(&kept), fx.digest_of(&renewed)];
        let mut index = fx.index().await;
        expected.sort();
        index.sort();
        assert_eq!(index, expected, "and reading the index pruned it");
    }

    pub(super) async fn a_session_missing_from_its_index_is_indexed_again_by_its_next_write(
        fx: Fixture,
    ) {
        let app = fx.app().await;
        let cookie = log_in(&app, "alice").await;
        let index = fx.index().await;
        let key = redis_key(&fx.prefix, &session_key_in(&cookie, &fx.key));
        // What a failure between the two writes of a login would leave.
        let mut redis = fx.redis().await;
        let index_key = format!("{}u:{}", fx.prefix, base64_sha256("\"alice\""));
        let () = redis.zrem(&index_key, &index[0]).await.expect("ZREM");
        let () = redis.hdel(&key, "\0i").await.expect("HDEL");

        assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
        assert!(
            fx.index().await.is_empty(),
            "a read does not touch the index"
        );
        send(&app, Method::POST, "/set/theme/dark", Some(&cookie)).await;
        assert_eq!(fx.index().await, index, "the write healed it");
    }

    pub(super) async fn lifecycle_events_reach_a_subscriber_each_sessions_in_order(fx: Fixture) {
        let app = fx.app().await;
        let mut events = fx.store().events();
        // The subscription is live once an event published after it arrives.
        let first = until_live(&app, &mut events).await;
        assert!(
            matches!(first.0, SessionNotice::Event(ref e) if e.event == SessionEventKind::Created)
        );

        let cookie = log_in(&app, "alice").await;
        send(&app, Method::POST, "/purge", Some(&cookie)).await;
        let other = log_in(&app, "alice").await;
        let keeper = log_in(&app, "alice").await;
        answer(&app, "/revoke-others", &keeper).await;
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let notice = tokio::time::timeout(Duration::from_secs(5), events.next())
                .await
                .expect("an event in time")
                .expect("the stream goes on");
            let SessionNotice::Event(event) = notice else {
                panic!("unexpected {notice:?}");
            };
            if event.user.as_deref() == Some("alice") {
                assert_eq!(event.instance.as_deref(), Some("test"));
                seen.push((event.event, event.session));
            }
        }
        // Events of one session come in the order they happened; on a cluster, those of
        // sessions on other shards reach the subscriber's node through the cluster bus, so
        // sessions may interleave.
        let reference = |cookie: &Cookie<'static>| fx.digest_of(cookie)[..12].to_owned();
        let of = |session: &str| -> Vec<SessionEventKind> {
            seen.iter()
                .filter(|(_, reference)| reference == session)
                .map(|(event, _)| *event)
                .collect()
        };
        assert_eq!(
            of(&reference(&cookie)),
            [SessionEventKind::Created, SessionEventKind::Deleted],
            "{seen:?}"
        );
        assert_eq!(
            of(&reference(&other)),
            [SessionEventKind::Created, SessionEventKind::Revoked],
            "{seen:?}"
        );
        assert_eq!(
            of(&reference(&keeper)),
            [SessionEventKind::Created],
            "{seen:?}"
        );
    }

    pub(super) async fn a_failed_removal_from_the_index_is_logged_and_pruned_by_the_next_listing(
        fx: Fixture,
    ) {
        let logs = CapturedLogs::start(tracing_subscriber::filter::LevelFilter::INFO);
        // A store whose Redis refuses it ZREM, and only that: a logout's session change lands,
        // and its second round trip, the removal from the index, fails as Redis fails it.
        let user = format!("no-zrem-{}", fx.prefix.trim_end_matches(':'));
        fx.acl_user(&user, &["-zrem"]).await;
        let mode = MiddlewareMode {
            security: CookieContentSecurity::Private,
            policy: TtlExtensionPolicy::OnStateChanges,
        };
        let app = tracked_app(fx.store_as(&user), &fx.key, mode, Gate::default()).await;
        let kept = log_in(&app, "alice").await;
        let leaving = log_in(&app, "alice").await;
        let (kept_digest, leaving_digest) = (fx.digest_of(&kept), fx.digest_of(&leaving));
        let mut both = vec![kept_digest.clone(), leaving_digest.clone()];
        both.sort();
        let mut index = fx.index().await;
        index.sort();
        assert_eq!(index, both);

        let logout = send(&app, Method::POST, "/purge", Some(&leaving)).await;
        assert_eq!(
            logout.status(),
            200,
            "a logout that took effect is answered as one"
        );
        let leaving_key = redis_key(&fx.prefix, &session_key_in(&leaving, &fx.key));
        let exists: bool = fx.redis().await.exists(&leaving_key).await.expect("EXISTS");
        assert!(!exists, "the logout deleted the session");
        assert_eq!(get_entry(&app, "user", Some(&leaving)).await, "none");
        let text = logs.text();
        let warning = text
            .lines()
            .find(|line| line.contains("the user's index keeps an ended session"))
            .unwrap_or_else(|| panic!("no warning of the failed removal in:\n{text}"));
        assert!(warning.contains("WARN"), "{warning}");
        assert!(warning.contains(&leaving_digest[..12]), "{warning}");
        // With Redis's own reason, here the ACL's refusal.
        assert!(warning.contains("NoPerm"), "{warning}");
        let mut index = fx.index().await;
        index.sort();
        assert_eq!(index, both, "the failed removal left the entry");

        // Redis takes ZREM again: the next read of the index prunes the ended session.
        fx.acl_user(&user, &["+zrem"]).await;
        let sessions = listed(&app, &kept).await;
        assert_eq!(sessions.len(), 1, "{sessions:?}");
        assert_eq!(sessions[0]["reference"], kept_digest[..12]);
        assert_eq!(fx.index().await, [kept_digest], "the listing pruned it");
    }

    pub(super) async fn the_index_key_expires_with_its_longest_session(fx: Fixture) {
        let app = fx.app().await;
        // Each login's bounds in wall-clock time, which Redis's expiry times are in too.
        let before_first = SystemTime::now();
        let first = log_in(&app, "alice").await;
        let after_first = SystemTime::now();
        let (expires, latest) = fx.index_expiry().await;
        let latest = i64::try_from(latest.expect("an entry")).expect("a time of this era");
        assert!(
            expires > 0,
            "the index has no expiry: PEXPIRETIME {expires}"
        );
        assert!(
            expires >= latest,
            "the index expires at {expires}, before its session ends at {latest}"
        );
        let took = epoch_millis(after_first) - epoch_millis(before_first);
        assert!(
            expires <= latest + INDEX_MARGIN_MILLIS + took,
            "the index outlives its session by {} ms",
            expires - latest
        );

        // A later session: the index's expiry follows it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before_second = SystemTime::now();
        let second = log_in(&app, "alice").await;
        let after_second = SystemTime::now();
        let (later, latest) = fx.index_expiry().await;
        let latest = i64::try_from(latest.expect("entries")).expect("a time of this era");
        assert!(
            later >= latest,
            "expires at {later}, its last session at {latest}"
        );
        let took = epoch_millis(after_second) - epoch_millis(before_second);
        assert!(
            later <= latest + INDEX_MARGIN_MILLIS + took,
            "{later} for {latest}"
        );
        // Both expiry times are whole milliseconds of Redis's clock: one of slack.
        let apart = epoch_millis(before_second) - epoch_millis(after_first);
        assert!(
            later - expires >= apart - 1,
            "the index's expiry moved by {} ms for logins {apart} ms apart",
            later - expires
        );

        // With no session left, no index.
        for cookie in [&first, &second] {
            send(&app, Method::POST, "/purge", Some(cookie)).await;
        }
        let exists: bool = fx
            .redis()
            .await
            .exists(fx.index_key())
            .await
            .expect("EXISTS");
        assert!(!exists, "an index of no session stays");
    }

    pub(super) async fn failed_logins_past_the_limit_are_throttled_for_the_window(fx: Fixture) {
        // A window far longer than any run of this test: what is asserted is the throttling,
        // not how fast a busy machine makes a few round trips.
        let window = Duration::from_secs(600);
        let throttle = fx
            .store()
            .login_throttle(ThrottleLimits::new(3, 100, window));
        let address = "192.0.2.7".parse().expect("an address");
        let started = Instant::now();
        for _ in 0..3 {
            fail(&throttle, "alice", address).await;
        }
        let throttled = refused(&throttle, "alice", address).await;
        assert_eq!(throttled.cause, ThrottleCause::Failures);
        // Until the first failure, settled after `started`, is a window old; Redis counts
        // whole milliseconds.
        assert!(throttled.retry_after <= window, "{throttled:?}");
        assert!(
            throttled.retry_after + started.elapsed() + Duration::from_millis(2) >= window,
            "{throttled:?} left {:?} after the first attempt",
            started.elapsed()
        );
        take(&throttle, "bob", address)
            .await
            .not_checked()
            .await
            .expect("given back");

        // A success clears the account's failures: two failures, a success, and three more
        // before the limit.
        for _ in 0..2 {
            fail(&throttle, "dave", address).await;
        }
        take(&throttle, "dave", address)
            .await
            .succeeded()
            .await
            .expect("succeeded");
        for _ in 0..3 {
            fail(&throttle, "dave", address).await;
        }
        refused(&throttle, "dave", address).await;

        // A failure stops counting a window after it, on a short one of another account and
        // address. A try whose refusal came too late to be sure its window still ran tells
        // nothing of it: another try is made, and five such fail the test.
        let window = Duration::from_millis(500);
        let throttle = fx
            .store()
            .login_throttle(ThrottleLimits::new(3, 100, window));
        for attempt in 1..=5u8 {
            let account = format!("carol{attempt}");
            let address: IpAddr = format!("192.0.2.{}", 10 + attempt)
                .parse()
                .expect("an address");
            let started = Instant::now();
            for _ in 0..3 {
                fail(&throttle, &account, address).await;
            }
            let checked = throttle.attempt(&account, address).await.expect("attempt");
            if started.elapsed() >= window {
                continue;
            }
            let throttled = checked.expect_err("throttled within its window");
            assert!(throttled.retry_after <= window, "{throttled:?}");
            tokio::time::sleep(throttled.retry_after + Duration::from_millis(100)).await;
            fail(&throttle, &account, address).await;
            return;
        }
        panic!("five tries each took longer than the {window:?} window to check");
    }

    /// 64 logins at once for one account with a limit of 5: five may check a password, the
    /// other 59 are refused before theirs (for attempts under way, not failures), and the
    /// address keeps only the five it spent.
    pub(super) async fn parallel_logins_past_the_limit_check_only_as_many_passwords(fx: Fixture) {
        let window = Duration::from_secs(600);
        let store = fx.store();
        let throttle = store.login_throttle(ThrottleLimits::new(5, 100, window));
        let address: IpAddr = "192.0.2.30".parse().expect("an address");
        let answers =
            futures_util::future::join_all((0..64).map(|_| throttle.attempt("alice", address)))
                .await;
        let (taken, refusals): (Vec<_>, Vec<_>) = answers
            .into_iter()
            .map(|answer| answer.expect("attempt"))
            .partition(Result::is_ok);
        assert_eq!((taken.len(), refusals.len()), (5, 59));
        for refusal in refusals {
            let throttled = refusal.expect_err("refused");
            assert_eq!(throttled.cause, ThrottleCause::UnderWay, "{throttled:?}");
            assert!(throttled.retry_after <= ThrottleLimits::new(1, 1, window).lease);
        }

        // The refused logins gave the address its attempts back: with a limit of 6 it has one
        // left, not none.
        let strict = store.login_throttle(ThrottleLimits::new(100, 6, window));
        fail(&strict, "bob", address).await;
        refused(&strict, "bob", address).await;

        // Attempts under way count: none is left for alice until they are settled.
        refused(&throttle, "alice", address).await;
        let mut taken = taken.into_iter().map(|attempt| attempt.expect("taken"));
        let mut next = || taken.next().expect("an attempt under way");
        next().not_checked().await.expect("given back");
        fail(&throttle, "alice", address).await;
        // A success clears alice's one failure; the three still under way go on counting, and
        // fail: two attempts are left.
        next().succeeded().await.expect("succeeded");
        for _ in 0..3 {
            next().failed().await.expect("failed");
        }
        for _ in 0..2 {
            fail(&throttle, "alice", address).await;
        }
        let throttled = refused(&throttle, "alice", address).await;
        assert_eq!(throttled.cause, ThrottleCause::Failures);
    }

    /// An attempt never settled (its process died during the check) counts for its lease and
    /// no longer. Another try is made when a refusal came too late to tell (five at most).
    pub(super) async fn an_attempt_never_settled_counts_for_its_lease(fx: Fixture) {
        let lease = Duration::from_millis(500);
        let limits = ThrottleLimits::new(2, 100, Duration::from_secs(600)).with_lease(lease);
        let throttle = fx.store().login_throttle(limits);
        let address: IpAddr = "192.0.2.40".parse().expect("an address");
        for attempt in 1..=5u8 {
            let account = format!("erin{attempt}");
            let started = Instant::now();
            for _ in 0..2 {
                drop(take(&throttle, &account, address).await);
            }
            let checked = throttle.attempt(&account, address).await.expect("attempt");
            if started.elapsed() >= lease {
                continue;
            }
            let throttled = checked.expect_err("refused while the leases run");
            assert_eq!(throttled.cause, ThrottleCause::UnderWay);
            assert!(throttled.retry_after <= lease, "{throttled:?}");
            // Both leases ended: two attempts again, then the two failures fill the log.
            tokio::time::sleep(lease + Duration::from_millis(100)).await;
            for _ in 0..2 {
                fail(&throttle, &account, address).await;
            }
            let throttled = refused(&throttle, &account, address).await;
            assert_eq!(throttled.cause, ThrottleCause::Failures);
            return;
        }
        panic!("five tries each took longer than the {lease:?} lease");
    }

    pub(super) async fn a_login_beyond_the_limit_ends_the_oldest_session(fx: Fixture) {
        let store = fx
            .deployment
            .store_with(fx.builder().max_sessions_per_user(3));
        let app = fx.app_on(store.clone()).await;
        let mut events = store.events();
        until_live(&app, &mut events).await;
        // Sessions are as old as their creation's millisecond, and two of one millisecond are
        // ordered by chance: the logins are apart by more.
        let mut cookies = Vec::new();
        for _ in 0..3 {
            cookies.push(log_in(&app, "alice").await);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(listed(&app, &cookies[2]).await.len(), 3);

        let newest = log_in(&app, "alice").await;
        let reference = |cookie: &Cookie<'static>| fx.digest_of(cookie)[..12].to_owned();
        let mut listed: Vec<String> = listed(&app, &newest)
            .await
            .iter()
            .map(|session| {
                session["reference"]
                    .as_str()
                    .expect("a reference")
                    .to_owned()
            })
            .collect();
        listed.sort();
        let mut expected: Vec<String> = cookies[1..]
            .iter()
            .chain([&newest])
            .map(reference)
            .collect();
        expected.sort();
        assert_eq!(listed, expected, "the three newest, the oldest gone");
        assert_eq!(fx.index().await.len(), 3);
        assert_eq!(get_entry(&app, "user", Some(&cookies[0])).await, "none");

        let oldest = reference(&cookies[0]);
        let evicted = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(notice) = events.next().await {
                if let SessionNotice::Event(event) = notice
                    && event.event == SessionEventKind::Evicted
                {
                    return event;
                }
            }
            panic!("the stream ended");
        })
        .await
        .expect("an evicted event within 5 s");
        assert_eq!(evicted.session, oldest);
        assert_eq!(evicted.user.as_deref(), Some("alice"));
    }

    /// `stale` entries of sessions that do not exist, written straight into alice's index with
    /// scores both older and newer than her live sessions', in steps that hold Redis up for
    /// milliseconds each.
    async fn fill_index_with_stale_entries(fx: &Fixture, stale: usize) {
        const FILL: &str = "for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do \
            redis.call('ZADD', KEYS[1], ARGV[1] + i, string.format('stale%038d', i)) end";
        let mut redis = fx.redis().await;
        let now = epoch_millis(SystemTime::now());
        let lifetime = 12 * 60 * 60 * 1000;
        let half = i64::try_from(stale / 2).expect("small");
        let stale = i64::try_from(stale).expect("small");
        for first in (0..stale).step_by(10_000) {
            let () = redis::cmd("EVAL")
                .arg(FILL)
                .arg(1)
                .arg(fx.index_key())
                .arg(now + lifetime - half)
                .arg(first)
                .arg((first + 10_000).min(stale) - 1)
                .query_async(&mut redis)
                .await
                .expect("EVAL");
        }
    }

    pub(super) async fn an_index_of_stale_entries_is_listed_and_emptied_within_the_deadline(
        fx: Fixture,
        stale: usize,
    ) {
        let app = fx.app().await;
        fill_index_with_stale_entries(&fx, stale).await;
        let mut cookies = Vec::new();
        for _ in 0..3 {
            cookies.push(log_in(&app, "alice").await);
        }

        let started = Instant::now();
        let sessions = listed(&app, &cookies[0]).await;
        let took = started.elapsed();
        println!("listing alice's 3 sessions among {stale} stale entries took {took:?}");
        assert_eq!(sessions.len(), 3, "only the live sessions: {sessions:?}");
        assert_eq!(
            fx.index().await.len(),
            3,
            "the listing pruned every stale entry"
        );

        fill_index_with_stale_entries(&fx, stale).await;
        let started = Instant::now();
        let revoked = fx
            .store()
            .revoke_all(&"alice", None)
            .await
            .expect("log out everywhere answers within the deadline");
        println!(
            "log out everywhere among {stale} stale entries took {:?}",
            started.elapsed()
        );
        assert_eq!(revoked, 3);
        assert!(fx.index().await.is_empty(), "the index is empty");
        for cookie in &cookies {
            assert_eq!(get_entry(&app, "user", Some(cookie)).await, "none");
        }
    }

    pub(super) async fn a_session_read_past_its_absolute_lifetime_publishes_expired(fx: Fixture) {
        let store = fx
            .deployment
            .store_with(fx.builder().absolute_timeout(Duration::from_millis(1500)));
        let app = fx.app_on(store.clone()).await;
        let mut events = store.events();
        until_live(&app, &mut events).await;
        let cookie = log_in(&app, "alice").await;
        let reference = fx.digest_of(&cookie)[..12].to_owned();
        tokio::time::sleep(Duration::from_millis(1600)).await;
        assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "none");
        let expired = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(notice) = events.next().await {
                if let SessionNotice::Event(event) = notice
                    && event.session == reference
                    && event.event != SessionEventKind::Created
                {
                    return event;
                }
            }
            panic!("the stream ended");
        })
        .await
        .expect("an event for the session within 5 s");
        assert_eq!(expired.event, SessionEventKind::Expired);
        assert_eq!(expired.user.as_deref(), Some("alice"));
    }

    pub(super) async fn a_creation_time_minutes_ahead_is_live_within_the_tolerance(fx: Fixture) {
        let app = fx.app().await;
        let mut redis = fx.redis().await;
        for (ahead_minutes, live) in [(2, true), (6, false)] {
            let cookie = log_in(&app, "alice").await;
            let key = redis_key(&fx.prefix, &session_key_in(&cookie, &fx.key));
            let ahead = epoch_millis(SystemTime::now()) + ahead_minutes * 60 * 1000;
            let _: u64 = redis.hset(&key, "\0c", ahead).await.expect("HSET");
            let user = get_entry(&app, "user", Some(&cookie)).await;
            assert_eq!(
                user == "alice",
                live,
                "created {ahead_minutes} minutes ahead (tolerance 5): {user}"
            );
        }
    }

    pub(super) async fn a_login_over_a_session_deleted_meanwhile_signs_the_client_in(fx: Fixture) {
        for previous_user in [None, Some("alice")] {
            let gate = Gate::default();
            let app = tracked_app(fx.store(), &fx.key, Fixture::MODE, gate.clone()).await;
            let visit = match previous_user {
                Some(user) => send(&app, Method::POST, &format!("/login/{user}"), None).await,
                None => send(&app, Method::POST, "/set/theme/dark", None).await,
            };
            let cookie = session_cookie(&visit).expect("a session");
            let login = send(&app, Method::POST, "/gated-login/bob", Some(&cookie));
            let delete = async {
                gate.wait_for(1).await;
                let key = redis_key(&fx.prefix, &session_key_in(&cookie, &fx.key));
                let _: u64 = fx.redis().await.del(&key).await.expect("DEL");
                gate.open();
            };
            let (response, ()) = futures_util::join!(login, delete);
            assert_eq!(response.status(), 200);
            let signed_in = session_cookie(&response).expect("a new session cookie");
            assert_eq!(
                get_entry(&app, "user", Some(&signed_in)).await,
                "bob",
                "over {previous_user:?}"
            );
        }
    }

    pub(super) async fn without_track_changes_a_session_that_gains_its_user_is_revocable(
        fx: Fixture,
    ) {
        let app = fx.bare_app().await;
        let visit = send(&app, Method::POST, "/set/theme/dark", None).await;
        let cookie = session_cookie(&visit).expect("a session");
        send(&app, Method::POST, "/set/user/alice", Some(&cookie)).await;
        assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "alice");
        assert_eq!(fx.index().await, [fx.digest_of(&cookie)]);
        let revoked = fx
            .store()
            .revoke_all(&"alice", None)
            .await
            .expect("log out everywhere");
        assert_eq!(revoked, 1);
        assert_eq!(get_entry(&app, "user", Some(&cookie)).await, "none");
    }
}

macro_rules! users_suite {
    ($deployment:path; $($case:ident),* $(,)?) => {
        $(
            #[actix_web::test]
            async fn $case() {
                super::cases::$case(super::Fixture::on($deployment())).await;
            }
        )*
    };
}

macro_rules! every_guarantee {
    ($deployment:path) => {
        users_suite!($deployment;
            a_login_beyond_the_limit_ends_the_oldest_session,
            a_session_read_past_its_absolute_lifetime_publishes_expired,
            a_creation_time_minutes_ahead_is_live_within_the_tolerance,
            a_login_over_a_session_deleted_meanwhile_signs_the_client_in,
            without_track_changes_a_session_that_gains_its_user_is_revocable,
            parallel_logins_past_the_limit_check_only_as_many_passwords,
            an_attempt_never_settled_counts_for_its_lease,
        );
    };
}

macro_rules! every_case {
    ($deployment:path) => {
        users_suite!($deployment;
            a_users_sessions_are_listed_and_revoked,
            a_request_in_flight_during_a_revocation_leaves_nothing_behind,
            the_index_keeps_no_ended_session,
            a_session_missing_from_its_index_is_indexed_again_by_its_next_write,
            lifecycle_events_reach_a_subscriber_each_sessions_in_order,
            failed_logins_past_the_limit_are_throttled_for_the_window,
            the_index_key_expires_with_its_longest_session,
        );
    };
}

mod single_node {
    use integration_tests::deployment::Deployment;

    every_case!(Deployment::single);
    every_guarantee!(Deployment::single);

    #[actix_web::test]
    async fn an_index_of_a_million_stale_entries_is_listed_and_emptied_within_the_deadline() {
        let fx = super::Fixture::on(Deployment::single());
        super::cases::an_index_of_stale_entries_is_listed_and_emptied_within_the_deadline(
            fx, 1_000_000,
        )
        .await;
    }
    // Behind Sentinel, the store takes no credentials for the data servers, so no ACL user
    // of the test's own.
    users_suite!(Deployment::single;
        a_failed_removal_from_the_index_is_logged_and_pruned_by_the_next_listing);
}

mod cluster {
    use integration_tests::deployment::Deployment;

    every_case!(Deployment::cluster);
    every_guarantee!(Deployment::cluster);

    /// Fewer than on a single node: the cluster is shared with the other tests.
    #[actix_web::test]
    async fn an_index_of_stale_entries_is_listed_and_emptied_within_the_deadline() {
        let fx = super::Fixture::on(Deployment::cluster());
        super::cases::an_index_of_stale_entries_is_listed_and_emptied_within_the_deadline(
            fx, 20_000,
        )
        .await;
    }
    users_suite!(Deployment::cluster;
        a_failed_removal_from_the_index_is_logged_and_pruned_by_the_next_listing);
}

mod sentinel {
    use integration_tests::deployment::Deployment;

    every_case!(Deployment::sentinel);
    every_guarantee!(Deployment::sentinel);
}

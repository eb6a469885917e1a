//! A user's sessions: listed, revoked one by one or all at once, with an index in Redis that
//! never keeps an ended session; lifecycle events over pub/sub; a login throttle shared by
//! every instance. Stamped per topology, as the acceptance suite is.

use std::time::Duration;

use actix_session::config::{CookieContentSecurity, TtlExtensionPolicy};
use actix_web::{
    cookie::{Cookie, Key},
    http::Method,
};
use futures_util::StreamExt as _;
use integration_tests::{
    deployment::{AnyConnection, Deployment, unique_prefix},
    session_app::{
        Gate, MiddlewareMode, TestApp, get_entry, redis_key, send, session_cookie, session_key_in,
        tracked_app,
    },
};
use redis::AsyncCommands as _;
use serde_json::Value;
use session_store::{RedisSessionStore, SessionEventKind, SessionNotice, ThrottleLimits};

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

    fn store(&self) -> RedisSessionStore {
        self.deployment.store_with(
            RedisSessionStore::builder()
                .key_prefix(self.prefix.clone())
                .user_entry("user")
                .publish_events(true)
                .instance_label("test"),
        )
    }

    async fn app(&self) -> impl TestApp + use<> {
        let mode = MiddlewareMode {
            security: CookieContentSecurity::Private,
            policy: TtlExtensionPolicy::OnStateChanges,
        };
        tracked_app(self.store(), &self.key, mode, self.gate.clone()).await
    }

    async fn redis(&self) -> AnyConnection {
        self.deployment.connection().await
    }

    /// What alice's index holds, read straight from Redis.
    async fn index(&self) -> Vec<String> {
        let index = format!(
            "{}u:{}",
            self.prefix,
            base64_sha256(&serde_json::to_string("alice").expect("JSON"))
        );
        self.redis()
            .await
            .zrange(index, 0, -1)
            .await
            .expect("ZRANGE")
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
        let mut probe = 0;
        let first = loop {
            probe += 1;
            let cookie = log_in(&app, &format!("probe{probe}")).await;
            if let Ok(Some(notice)) =
                tokio::time::timeout(Duration::from_millis(200), events.next()).await
            {
                break (notice, cookie);
            }
        };
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

    pub(super) async fn failed_logins_past_the_limit_are_throttled_for_the_window(fx: Fixture) {
        let throttle =
            fx.store()
                .login_throttle(ThrottleLimits::new(3, 100, Duration::from_millis(1500)));
        let address = "192.0.2.7".parse().expect("an address");
        for _ in 0..3 {
            assert_eq!(
                throttle.check("alice", address).await.expect("check"),
                Ok(())
            );
            throttle.failed("alice", address).await.expect("failed");
        }
        let throttled = throttle
            .check("alice", address)
            .await
            .expect("check")
            .expect_err("throttled");
        assert!(throttled.retry_after <= Duration::from_millis(1500));
        assert!(throttled.retry_after > Duration::ZERO);
        assert_eq!(
            throttle.check("bob", address).await.expect("check"),
            Ok(()),
            "another account from the same address is not"
        );
        tokio::time::sleep(throttled.retry_after + Duration::from_millis(100)).await;
        assert_eq!(
            throttle.check("alice", address).await.expect("check"),
            Ok(()),
            "the window ended"
        );

        throttle.failed("alice", address).await.expect("failed");
        throttle.succeeded("alice").await.expect("succeeded");
        for _ in 0..2 {
            throttle.failed("alice", address).await.expect("failed");
        }
        assert_eq!(
            throttle.check("alice", address).await.expect("check"),
            Ok(()),
            "a success cleared the account's count"
        );
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

macro_rules! every_case {
    ($deployment:path) => {
        users_suite!($deployment;
            a_users_sessions_are_listed_and_revoked,
            a_request_in_flight_during_a_revocation_leaves_nothing_behind,
            the_index_keeps_no_ended_session,
            a_session_missing_from_its_index_is_indexed_again_by_its_next_write,
            lifecycle_events_reach_a_subscriber_each_sessions_in_order,
            failed_logins_past_the_limit_are_throttled_for_the_window,
        );
    };
}

mod single_node {
    use integration_tests::deployment::Deployment;

    every_case!(Deployment::single);
}

mod cluster {
    use integration_tests::deployment::Deployment;

    every_case!(Deployment::cluster);
}

mod sentinel {
    use integration_tests::deployment::Deployment;

    every_case!(Deployment::sentinel);
}

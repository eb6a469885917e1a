//! Sessions of actix-session's own `RedisSessionStore` (0.11) under the store's legacy
//! setting, on every topology: read and written in place while interoperating, moved to the
//! store's layout on their first request while migrating, and never brought back after a
//! logout. Old sessions are written here as that store writes them (`SET key json NX EX ttl`,
//! the key from its key function); `old_store_interop.rs` checks that format against the real
//! store.

use actix_session::storage::{SessionKey, SessionStore};
use actix_web::cookie::{Key, time::Duration as CookieDuration};
use integration_tests::{
    deployment::{AnyConnection, Deployment, unique_prefix},
    session_app::{self, Gate, forge_cookie, gated_app, get_entry, race, session_cookie},
};
use redis::AsyncCommands as _;
use session_store::{CurrentSession, LegacySessions, RedisSessionStore};

/// The state TTL actix-session passes every store: the old store's TTL.
const TTL: CookieDuration = CookieDuration::hours(1);

/// A deployment, a key prefix of this test's own, and the old store's key function (which
/// puts old keys under the prefix too, so that tests sharing a cluster stay apart).
struct Fixture {
    deployment: Deployment,
    prefix: String,
}

type State = std::collections::HashMap<String, String>;

impl Fixture {
    fn on(deployment: Deployment) -> Self {
        Self {
            deployment,
            prefix: unique_prefix(),
        }
    }

    fn legacy(&self, legacy: LegacySessions) -> LegacySessions {
        let prefix = self.prefix.clone();
        legacy.key_function(move |key| format!("{prefix}old:{key}"))
    }

    fn old_key(&self, id: &str) -> String {
        format!("{}old:{id}", self.prefix)
    }

    fn new_key(&self, id: &str) -> String {
        session_app::redis_key(&self.prefix, id)
    }

    /// A store at `legacy`'s step, with a user entry (`user`).
    fn store(&self, legacy: LegacySessions) -> RedisSessionStore {
        self.deployment.store_with(
            RedisSessionStore::builder()
                .key_prefix(self.prefix.clone())
                .user_entry("user")
                .legacy_sessions(self.legacy(legacy)),
        )
    }

    async fn redis(&self) -> AnyConnection {
        self.deployment.connection().await
    }

    /// An old session holding `state`, as the old store's `save` makes one; its session key.
    async fn seed(&self, state: &[(&str, &str)]) -> SessionKey {
        let id = old_id();
        let value = serde_json::to_string(&entries(state)).expect("JSON");
        let saved: Option<String> = redis::cmd("SET")
            .arg(self.old_key(&id))
            .arg(value)
            .arg("NX")
            .arg("EX")
            .arg(TTL.whole_seconds())
            .query_async(&mut self.redis().await)
            .await
            .expect("SET");
        assert!(saved.is_some());
        SessionKey::try_from(id).expect("a valid key")
    }

    /// The state at an old key, read as the old store reads it.
    async fn old_state(&self, id: &SessionKey) -> Option<State> {
        let value: Option<String> = self
            .redis()
            .await
            .get(self.old_key(id.as_ref()))
            .await
            .expect("GET");
        value.map(|value| serde_json::from_str(&value).expect("the old store's format"))
    }

    /// What a move that began at `began` and was cut short leaves at the session's new key:
    /// a live session of `fay`, marked as moving.
    async fn mark_moving(&self, id: &SessionKey, began: u64) {
        let () = redis::cmd("HSET")
            .arg(self.new_key(id.as_ref()))
            .arg("\0c")
            .arg(now_millis())
            .arg("\0m")
            .arg(began)
            .arg("user")
            .arg("\"fay\"")
            .query_async(&mut self.redis().await)
            .await
            .expect("HSET");
    }

    async fn exists(&self, key: &str) -> bool {
        self.redis().await.exists(key).await.expect("EXISTS")
    }
}

/// A fresh session key of the old store's shape: 64 alphanumerics (hex digits here, from
/// the standard library's randomly keyed hasher).
fn old_id() -> String {
    use std::hash::{BuildHasher as _, RandomState};
    (0..4)
        .map(|part: u64| format!("{:016x}", RandomState::new().hash_one(part)))
        .collect()
}

fn key(id: &SessionKey) -> SessionKey {
    SessionKey::try_from(id.as_ref().to_owned()).expect("a valid key")
}

fn now_millis() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(now.as_millis()).expect("a time")
}

/// Entries as actix-session holds them: values are JSON text.
fn entries(state: &[(&str, &str)]) -> State {
    state
        .iter()
        .map(|(name, value)| ((*name).to_owned(), format!("\"{value}\"")))
        .collect()
}

mod cases {
    use super::*;

    /// Interoperating, an old session is read, written, slid and ended where the old store
    /// keeps it, in its format, and nothing is written in the store's own layout.
    pub(super) async fn interoperating_keeps_old_sessions_in_place(fx: Fixture) {
        let store = fx.store(LegacySessions::interoperate());
        let id = fx.seed(&[("user", "alice"), ("theme", "dark")]).await;
        assert_eq!(
            store.load(&id).await.expect("load"),
            Some(entries(&[("user", "alice"), ("theme", "dark")]))
        );
        let changed = entries(&[("user", "alice"), ("theme", "light")]);
        let kept = store.update(key(&id), changed.clone(), &TTL).await;
        assert_eq!(kept.expect("update").as_ref(), id.as_ref(), "same key");
        assert_eq!(fx.old_state(&id).await, Some(changed));
        let ttl: i64 = fx
            .redis()
            .await
            .ttl(fx.old_key(id.as_ref()))
            .await
            .expect("TTL");
        assert!(ttl > TTL.whole_seconds() - 60, "the old store's TTL: {ttl}");
        let () = fx
            .redis()
            .await
            .expire(fx.old_key(id.as_ref()), 60)
            .await
            .expect("EXPIRE");
        store.update_ttl(&id, &TTL).await.expect("update_ttl");
        let ttl: i64 = fx
            .redis()
            .await
            .ttl(fx.old_key(id.as_ref()))
            .await
            .expect("TTL");
        assert!(ttl > 60, "update_ttl slides as the old store's: {ttl}");
        assert!(!fx.exists(&fx.new_key(id.as_ref())).await, "no new layout");

        store.delete(&id).await.expect("delete");
        assert_eq!(fx.old_state(&id).await, None, "a logout ends it");
        let after = store
            .update(key(&id), entries(&[("user", "alice")]), &TTL)
            .await;
        assert_eq!(after.expect("update").as_ref(), id.as_ref());
        assert_eq!(
            fx.old_state(&id).await,
            None,
            "a write never brings it back"
        );
        assert_eq!(store.load(&id).await.expect("load"), None);
    }

    /// Interoperating, a new session is one that the old store can read: its id has the old
    /// shape, its state the old format, at the old key.
    pub(super) async fn interoperating_creates_sessions_the_old_store_reads(fx: Fixture) {
        let store = fx.store(LegacySessions::interoperate());
        let state = entries(&[("user", "bob")]);
        let id = store.save(state.clone(), &TTL).await.expect("save");
        assert_eq!(id.as_ref().len(), 64);
        assert!(id.as_ref().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(fx.old_state(&id).await, Some(state.clone()));
        assert_eq!(store.load(&id).await.expect("load"), Some(state));
        assert!(!fx.exists(&fx.new_key(id.as_ref())).await);
    }

    /// Interoperating behind `TrackChanges`, two requests of one old session that change
    /// different entries both keep their change (the old store's `update` writes the whole
    /// state: the last writer would win).
    pub(super) async fn interoperating_writes_only_what_a_request_changed(fx: Fixture) {
        let cookie_key = Key::generate();
        let gate = Gate::default();
        let app = gated_app(fx.store(LegacySessions::interoperate()), &cookie_key, &gate).await;
        let id = fx.seed(&[("user", "carol")]).await;
        let cookie = forge_cookie(
            &cookie_key,
            actix_session::config::CookieContentSecurity::Private,
            id.as_ref(),
        );
        let (gated, meanwhile) = race(&app, &gate, &cookie, "/gated-set/a/1", "/set/b/2").await;
        assert_eq!(
            (gated.status().as_u16(), meanwhile.status().as_u16()),
            (200, 200)
        );
        for response in [&gated, &meanwhile] {
            let reissued = session_cookie(response).map(|cookie| cookie.value().to_owned());
            let opened = reissued.map(|value| {
                let cookie = actix_web::cookie::Cookie::new(session_app::COOKIE, value);
                session_app::session_key_in(&cookie, &cookie_key)
            });
            assert!(opened.is_none_or(|key| key == id.as_ref()), "same session");
        }
        assert_eq!(
            fx.old_state(&id).await,
            Some(entries(&[("user", "carol"), ("a", "1"), ("b", "2")]))
        );
        assert_eq!(get_entry(&app, "b", Some(&cookie)).await, "2");
    }

    /// Migrating, an old session moves on its first request: the same id, in the store's
    /// layout, its user indexed, the old key gone; then each read is the store's own.
    pub(super) async fn migrating_moves_an_old_session_on_its_first_request(fx: Fixture) {
        let store = fx.store(LegacySessions::migrate());
        let state = entries(&[("user", "dave"), ("cart", "3")]);
        let id = fx.seed(&[("user", "dave"), ("cart", "3")]).await;
        assert_eq!(store.load(&id).await.expect("load"), Some(state.clone()));
        assert_eq!(fx.old_state(&id).await, None, "the old key is gone");
        let mut redis = fx.redis().await;
        let moved: std::collections::HashMap<String, Vec<u8>> = redis
            .hgetall(fx.new_key(id.as_ref()))
            .await
            .expect("HGETALL");
        assert!(moved.contains_key("\0c"), "a creation time: {moved:?}");
        assert!(!moved.contains_key("\0m"), "the move is finished");
        assert_eq!(moved["cart"][..2], [0, 1], "sealed as it moved");
        assert_eq!(moved["user"], b"\"dave\"", "the user entry stays in clear");
        let listed = store
            .sessions_of(&"dave", &CurrentSession::none())
            .await
            .expect("sessions_of");
        assert_eq!(listed.len(), 1, "the user is indexed");
        assert_eq!(store.load(&id).await.expect("load"), Some(state.clone()));

        let written = store
            .update(key(&id), entries(&[("user", "dave")]), &TTL)
            .await
            .expect("update");
        assert_eq!(written.as_ref(), id.as_ref());
        store.delete(&id).await.expect("delete");
        assert!(!fx.exists(&fx.new_key(id.as_ref())).await, "logged out");
        assert_eq!(store.load(&id).await.expect("load"), None);
        assert_eq!(fx.old_state(&id).await, None);
    }

    /// Many first requests of one old session at once: each gets the session, and it moves
    /// once.
    pub(super) async fn a_burst_of_first_requests_moves_a_session_once(fx: Fixture) {
        let store = fx.store(LegacySessions::migrate());
        let id = fx.seed(&[("user", "erin")]).await;
        let loads = (0..20).map(|_| store.load(&id));
        for loaded in futures_util::future::join_all(loads).await {
            assert_eq!(loaded.expect("load"), Some(entries(&[("user", "erin")])));
        }
        assert_eq!(fx.old_state(&id).await, None);
        let listed = store
            .sessions_of(&"erin", &CurrentSession::none())
            .await
            .expect("sessions_of");
        assert_eq!(listed.len(), 1);
    }

    /// A move that a failure cut short (the new copy made, marked; the old key not yet
    /// deleted) is finished by the next read; one whose old key is gone meanwhile (a logout
    /// deletes the old key first) ends: a logout is never undone. A move younger than an
    /// operation may take is left to the request making it.
    pub(super) async fn an_unfinished_move_is_settled_by_the_next_read(fx: Fixture) {
        let store = fx.store(LegacySessions::migrate());
        let long_ago = 1_000u64;
        let mark = |id, began| fx.mark_moving(id, began);
        let cut_short = fx.seed(&[("user", "fay")]).await;
        mark(&cut_short, long_ago).await;
        assert_eq!(
            store.load(&cut_short).await.expect("load"),
            Some(entries(&[("user", "fay")]))
        );
        assert_eq!(fx.old_state(&cut_short).await, None, "the move finished");
        let moved: State = fx
            .redis()
            .await
            .hgetall(fx.new_key(cut_short.as_ref()))
            .await
            .expect("HGETALL");
        assert!(!moved.contains_key("\0m"));

        let logged_out = SessionKey::try_from(old_id()).expect("a valid key");
        mark(&logged_out, long_ago).await;
        assert_eq!(store.load(&logged_out).await.expect("load"), None);
        assert!(!fx.exists(&fx.new_key(logged_out.as_ref())).await, "ended");

        let under_way = fx.seed(&[("user", "fay")]).await;
        mark(&under_way, now_millis()).await;
        assert!(store.load(&under_way).await.expect("load").is_some());
        assert!(
            fx.old_state(&under_way).await.is_some(),
            "left to its mover"
        );
    }

    /// A key of the old shape found in neither layout is no session, and creates nothing.
    pub(super) async fn a_session_in_neither_layout_is_no_session(fx: Fixture) {
        for legacy in [LegacySessions::interoperate(), LegacySessions::migrate()] {
            let store = fx.store(legacy);
            let id = SessionKey::try_from(old_id()).expect("a valid key");
            assert_eq!(store.load(&id).await.expect("load"), None);
            assert!(!fx.exists(&fx.new_key(id.as_ref())).await);
            assert_eq!(fx.old_state(&id).await, None);
        }
    }

    /// After the migration, with the setting dropped, a moved session keeps its id and lives
    /// on; an old session never moved is no session.
    pub(super) async fn moved_sessions_outlive_the_setting(fx: Fixture) {
        let migrating = fx.store(LegacySessions::migrate());
        let id = fx.seed(&[("user", "gus")]).await;
        assert!(migrating.load(&id).await.expect("load").is_some());
        let never_moved = fx.seed(&[("user", "hal")]).await;
        let after = fx.deployment.store_with(
            RedisSessionStore::builder()
                .key_prefix(fx.prefix.clone())
                .user_entry("user"),
        );
        assert_eq!(
            after.load(&id).await.expect("load"),
            Some(entries(&[("user", "gus")]))
        );
        assert_eq!(after.load(&never_moved).await.expect("load"), None);
        assert!(fx.old_state(&never_moved).await.is_some(), "left alone");
    }

    /// Old-format values the store cannot read (not JSON, not a string) are no session, and
    /// deleted; the request goes on.
    pub(super) async fn an_unreadable_old_value_is_no_session(fx: Fixture) {
        let store = fx.store(LegacySessions::interoperate());
        let id = old_id();
        let () = fx
            .redis()
            .await
            .set(fx.old_key(&id), "not json")
            .await
            .expect("SET");
        let id = SessionKey::try_from(id).expect("a valid key");
        assert_eq!(store.load(&id).await.expect("load"), None);
        assert!(!fx.exists(&fx.old_key(id.as_ref())).await, "deleted");
    }
}

macro_rules! per_topology {
    ($($topology:ident: $deployment:path;)*) => {
        $(
            mod $topology {
                use super::{Fixture, cases};

                macro_rules! case {
                    ($case:ident) => {
                        #[actix_web::test]
                        async fn $case() {
                            cases::$case(Fixture::on($deployment())).await;
                        }
                    };
                }

                case!(interoperating_keeps_old_sessions_in_place);
                case!(interoperating_creates_sessions_the_old_store_reads);
                case!(interoperating_writes_only_what_a_request_changed);
                case!(migrating_moves_an_old_session_on_its_first_request);
                case!(a_burst_of_first_requests_moves_a_session_once);
                case!(an_unfinished_move_is_settled_by_the_next_read);
                case!(a_session_in_neither_layout_is_no_session);
                case!(moved_sessions_outlive_the_setting);
                case!(an_unreadable_old_value_is_no_session);
            }
        )*
    };
}

per_topology! {
    single_node: integration_tests::deployment::Deployment::single;
    cluster: integration_tests::deployment::Deployment::cluster;
    sentinel: integration_tests::deployment::Deployment::sentinel;
}

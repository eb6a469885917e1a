//! The store's acceptance suite: one function per promised behaviour, stamped into a test
//! module per Redis topology by `acceptance_suite!`.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use actix_session::storage::{SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use integration_tests::{
    Command, Monitor,
    deployment::{AnyConnection, Deployment, unique_prefix},
    store_errors::assert_command_timeout,
};
use redis::AsyncCommands as _;
use session_store::{RedisSessionStore, RedisSessionStoreBuilder, StoreError};

/// What actix-session passes as `ttl`; the store's own timeouts govern, so any value will do.
const TTL: CookieDuration = CookieDuration::days(1);

/// One Redis deployment, a key prefix of this test's own on it, and ways to build stores.
struct Fixture {
    deployment: Deployment,
    prefix: String,
}

impl Fixture {
    fn single_node() -> Self {
        Self {
            deployment: Deployment::single(),
            prefix: unique_prefix(),
        }
    }

    fn cluster() -> Self {
        Self {
            deployment: Deployment::cluster(),
            prefix: unique_prefix(),
        }
    }

    fn sentinel() -> Self {
        Self {
            deployment: Deployment::sentinel(),
            prefix: unique_prefix(),
        }
    }

    /// The same kind of deployment, for this test alone: for a test that pauses Redis, which
    /// would hold up the other tests sharing a deployment.
    fn alone(self) -> Self {
        Self {
            deployment: self.deployment.alone(),
            prefix: self.prefix,
        }
    }

    fn store(&self) -> RedisSessionStore {
        self.store_with(RedisSessionStore::builder())
    }

    fn store_with(&self, builder: RedisSessionStoreBuilder) -> RedisSessionStore {
        self.deployment
            .store_with(builder.key_prefix(self.prefix.clone()))
    }

    /// Asserts that `store` loads no session for `id` and that no key is left under the
    /// prefix (`why` if one is).
    async fn assert_no_session(&self, store: &RedisSessionStore, id: &SessionKey, why: &str) {
        assert_eq!(store.load(id).await.expect("load"), None);
        assert!(self.stored_keys().await.is_empty(), "{why}");
    }

    /// A store whose sessions expire after `idle` without use.
    fn idle_store(&self, idle: Duration) -> RedisSessionStore {
        self.store_with(RedisSessionStore::builder().idle_timeout(idle))
    }

    async fn redis(&self) -> AnyConnection {
        self.deployment.connection().await
    }

    async fn monitor(&self) -> Monitor {
        self.deployment.monitor().await
    }

    /// The commands of this test that `monitor` saw: on a shared cluster, those that name a
    /// key under the test's prefix.
    async fn seen(&self, monitor: &Monitor) -> Vec<Command> {
        let commands = monitor.take().await.into_iter();
        match self.deployment {
            Deployment::Single(_) => commands.collect(),
            _ => commands
                .filter(|command| command.line.contains(&self.prefix))
                .collect(),
        }
    }

    /// The Redis key the store must use for `id`.
    fn redis_key(&self, id: &SessionKey) -> String {
        integration_tests::session_app::redis_key(&self.prefix, id.as_ref())
    }

    async fn stored_keys(&self) -> Vec<String> {
        self.redis()
            .await
            .keys(format!("{}*", self.prefix))
            .await
            .expect("KEYS")
    }

    /// Moves the session's creation time `by` into the past, as if it had lived that long.
    async fn age(&self, id: &SessionKey, by: Duration) {
        let mut redis = self.redis().await;
        let created: u64 = redis.hget(self.redis_key(id), "\0c").await.expect("HGET");
        let earlier = created - u64::try_from(by.as_millis()).expect("a short time");
        let () = redis
            .hset(self.redis_key(id), "\0c", earlier)
            .await
            .expect("HSET");
    }

    /// Returns once Redis has expired the session, or fails the test after ten seconds: a
    /// session that never expires fails however fast the machine.
    async fn until_gone(&self, id: &SessionKey) {
        let gone = async {
            while self.pttl(id).await > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone)
            .await
            .expect("the session expires");
    }

    async fn pttl(&self, id: &SessionKey) -> i64 {
        self.redis()
            .await
            .pttl(self.redis_key(id))
            .await
            .expect("PTTL")
    }
}

/// A session of `entries` saved through `store`: its key.
async fn saved(store: &RedisSessionStore, entries: &[(&str, &str)]) -> SessionKey {
    store.save(state(entries), &TTL).await.expect("save")
}

/// The key `store` hands back for `id` after updating it to hold `entries`.
async fn updated(
    store: &RedisSessionStore,
    id: SessionKey,
    entries: &[(&str, &str)],
) -> SessionKey {
    store
        .update(id, state(entries), &TTL)
        .await
        .expect("update")
}

fn state(entries: &[(&str, &str)]) -> HashMap<String, String> {
    entries
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn key(id: &str) -> SessionKey {
    SessionKey::try_from(id.to_owned()).expect("short enough for a session key")
}

/// A key of the right shape that the store never issued.
const NEVER_ISSUED: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

mod cases {
    use super::*;

    pub(super) async fn saved_state_loads_back(fx: Fixture) {
        let store = fx.store();
        let saved = state(&[("user", "\"alice\""), ("theme", "{\"dark\":true}")]);
        let id = store.save(saved.clone(), &TTL).await.expect("save");
        assert_eq!(store.load(&id).await.expect("load"), Some(saved));
    }

    pub(super) async fn a_state_of_many_entries_round_trips(fx: Fixture) {
        let store = fx.store();
        let many: HashMap<String, String> = (0..1000)
            .map(|i| (format!("entry{i}"), i.to_string()))
            .collect();
        let id = store.save(many.clone(), &TTL).await.expect("save");
        assert_eq!(store.load(&id).await.expect("load").as_ref(), Some(&many));
        let fewer: HashMap<String, String> = (500..1200)
            .map(|i| (format!("entry{i}"), (i * 2).to_string()))
            .collect();
        let id = store.update(id, fewer.clone(), &TTL).await.expect("update");
        assert_eq!(store.load(&id).await.expect("load"), Some(fewer));
    }

    pub(super) async fn ids_are_256_bit_url_safe_and_fresh(fx: Fixture) {
        let store = fx.store();
        let a = saved(&store, &[("k", "1")]).await;
        let b = saved(&store, &[("k", "1")]).await;
        for id in [&a, &b] {
            let id = id.as_ref();
            assert_eq!(id.len(), 43, "{id}");
            let bytes = URL_SAFE_NO_PAD.decode(id).expect("base64url");
            assert_eq!(bytes.len(), 32);
        }
        assert_ne!(a, b);
    }

    /// The fields of the one key in Redis, which must be the hash of `id`'s digest, not `id`.
    async fn the_only_hash(fx: &Fixture, id: &SessionKey) -> HashMap<Vec<u8>, Vec<u8>> {
        let keys = fx.stored_keys().await;
        assert_eq!(keys, vec![fx.redis_key(id)]);
        assert!(
            !keys[0].contains(id.as_ref()),
            "the id itself reached Redis"
        );
        fx.redis().await.hgetall(&keys[0]).await.expect("HGETALL")
    }

    pub(super) async fn redis_holds_a_hash_of_the_id_and_sealed_entries(fx: Fixture) {
        let store = fx.store();
        let id = saved(&store, &[("user", "\"alice\""), ("n", "7")]).await;
        let fields = the_only_hash(&fx, &id).await;
        for (name, value) in [("user", "\"alice\""), ("n", "7")] {
            let stored = &fields[name.as_bytes()];
            assert_eq!(stored[..2], [0, 1], "{name} is sealed");
            assert_eq!(stored.len(), value.len() + 30, "{name}: format, nonce, tag");
        }
        let user = &fields[b"user".as_slice()];
        assert!(!user.windows(5).any(|window| window == b"alice"));
        assert_eq!(
            store.load(&id).await.expect("load").expect("a session")["n"],
            "7"
        );
    }

    pub(super) async fn with_sealing_off_redis_holds_entries_as_given(fx: Fixture) {
        let store = fx.store_with(RedisSessionStore::builder().seal_entries(false));
        let id = saved(&store, &[("user", "\"alice\""), ("n", "7")]).await;
        let fields = the_only_hash(&fx, &id).await;
        assert_eq!(
            fields[b"user".as_slice()],
            b"\"alice\"",
            "no JSON inside JSON"
        );
        assert_eq!(fields[b"n".as_slice()], b"7");
        let metadata: Vec<_> = fields.keys().filter(|f| f.first() == Some(&0)).collect();
        assert_eq!(metadata, [b"\0c"], "one metadata field, the creation time");
    }

    pub(super) async fn malformed_keys_are_no_session_and_never_reach_redis(fx: Fixture) {
        let store = fx.store();
        let monitor = fx.monitor().await;
        for bad in [
            "",
            "short",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA{",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\0",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let bad = key(bad);
            assert_eq!(store.load(&bad).await.expect("load"), None, "{bad:?}");
            store.update_ttl(&bad, &TTL).await.expect("update_ttl");
            store.delete(&bad).await.expect("delete");
            let kept = updated(&store, bad, &[("k", "v")]).await;
            assert_eq!(store.load(&kept).await.expect("load"), None);
        }
        assert_eq!(
            fx.seen(&monitor).await,
            vec![],
            "a malformed key reached Redis"
        );
        assert!(fx.stored_keys().await.is_empty());
    }

    pub(super) async fn a_never_issued_key_is_no_session(fx: Fixture) {
        let store = fx.store();
        fx.assert_no_session(&store, &key(NEVER_ISSUED), "loading created a key")
            .await;
    }

    pub(super) async fn load_slides_the_idle_expiry(fx: Fixture) {
        let store = fx.idle_store(Duration::from_secs(4));
        let id = saved(&store, &[("k", "v")]).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(fx.pttl(&id).await <= 2600, "expiry did not run down");
        store.load(&id).await.expect("load").expect("live session");
        assert!(fx.pttl(&id).await > 3500, "load did not slide the expiry");
    }

    pub(super) async fn an_idle_session_expires(fx: Fixture) {
        let store = fx.idle_store(Duration::from_millis(300));
        let id = saved(&store, &[("k", "v")]).await;
        fx.until_gone(&id).await;
        assert_eq!(store.load(&id).await.expect("load"), None);
    }

    pub(super) async fn the_absolute_lifetime_ends_an_active_session(fx: Fixture) {
        let store = fx.store_with(
            RedisSessionStore::builder()
                .idle_timeout(Duration::from_secs(60))
                .absolute_timeout(Duration::from_secs(3600)),
        );
        let id = saved(&store, &[("k", "v")]).await;
        fx.age(&id, Duration::from_secs(59 * 60)).await;
        assert!(
            store.load(&id).await.expect("load").is_some(),
            "ended early"
        );
        fx.age(&id, Duration::from_secs(2 * 60)).await;
        fx.assert_no_session(&store, &id, "not deleted").await;
    }

    pub(super) async fn an_update_past_the_absolute_lifetime_writes_nothing(fx: Fixture) {
        let store = fx.store_with(
            RedisSessionStore::builder()
                .idle_timeout(Duration::from_secs(60))
                .absolute_timeout(Duration::from_millis(500)),
        );
        let id = saved(&store, &[("k", "v")]).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let id = updated(&store, id, &[("k", "w")]).await;
        assert!(
            fx.stored_keys().await.is_empty(),
            "the expired session was written"
        );
        assert_eq!(store.load(&id).await.expect("load"), None);
    }

    pub(super) async fn update_replaces_the_entries(fx: Fixture) {
        let store = fx.store();
        let id = saved(&store, &[("a", "1"), ("b", "2")]).await;
        let created: Vec<u8> = fx
            .redis()
            .await
            .hget(fx.redis_key(&id), "\0c")
            .await
            .expect("HGET");
        let new = state(&[("a", "10"), ("c", "3")]);
        let id = store.update(id, new.clone(), &TTL).await.expect("update");
        assert_eq!(store.load(&id).await.expect("load"), Some(new));
        let created_after: Vec<u8> = fx
            .redis()
            .await
            .hget(fx.redis_key(&id), "\0c")
            .await
            .expect("HGET");
        assert_eq!(created, created_after, "update changed the creation time");
    }

    pub(super) async fn update_after_delete_does_not_bring_the_session_back(fx: Fixture) {
        let store = fx.store();
        let id = saved(&store, &[("user", "1")]).await;
        let same = key(id.as_ref());
        store.delete(&id).await.expect("delete");
        let returned = updated(&store, id, &[("user", "1"), ("x", "2")]).await;
        assert_eq!(returned, same, "update must not hand out a new session");
        fx.assert_no_session(&store, &returned, "the state came back")
            .await;
    }

    pub(super) async fn update_after_expiry_does_not_bring_the_session_back(fx: Fixture) {
        let store = fx.idle_store(Duration::from_millis(200));
        let id = saved(&store, &[("user", "1")]).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let returned = updated(&store, id, &[("user", "1")]).await;
        fx.assert_no_session(&store, &returned, "the state came back")
            .await;
    }

    pub(super) async fn update_ttl_slides_the_expiry(fx: Fixture) {
        let store = fx.idle_store(Duration::from_secs(4));
        let id = saved(&store, &[("k", "v")]).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        store.update_ttl(&id, &TTL).await.expect("update_ttl");
        assert!(
            fx.pttl(&id).await > 3500,
            "update_ttl did not slide the expiry"
        );
    }

    pub(super) async fn update_ttl_on_an_ended_session_creates_nothing(fx: Fixture) {
        let store = fx.store();
        store
            .update_ttl(&key(NEVER_ISSUED), &TTL)
            .await
            .expect("update_ttl");
        assert!(fx.stored_keys().await.is_empty());
    }

    pub(super) async fn oversized_state_is_refused_and_the_stored_state_kept(fx: Fixture) {
        let store = fx.store_with(RedisSessionStore::builder().max_state_size(64));
        let small = state(&[("user", "\"alice\"")]);
        let id = store.save(small.clone(), &TTL).await.expect("save");
        let big = state(&[("user", "\"alice\""), ("blob", &"x".repeat(100))]);

        let err = store
            .update(key(id.as_ref()), big.clone(), &TTL)
            .await
            .expect_err("oversized update");
        let UpdateError::Serialization(cause) = err else {
            panic!("expected a serialization error, got {err:?}");
        };
        assert!(
            matches!(
                cause.downcast_ref(),
                // Names and values, and 30 bytes of sealing for each value.
                Some(StoreError::StateTooLarge {
                    size: 175,
                    limit: 64
                })
            ),
            "{cause:?}"
        );
        assert_eq!(store.load(&id).await.expect("load"), Some(small));

        let err = store.save(big, &TTL).await.expect_err("oversized save");
        assert!(matches!(err, SaveError::Serialization(_)), "{err:?}");
        assert_eq!(fx.stored_keys().await.len(), 1, "the refused save wrote");
    }

    pub(super) async fn a_state_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not(
        fx: Fixture,
    ) {
        let store = fx.store_with(RedisSessionStore::builder().max_state_size(64));
        // 4 bytes of name, 30 of value and 30 of sealing: the limit exactly.
        let at_limit = state(&[("blob", &"x".repeat(30))]);
        let id = store
            .save(at_limit.clone(), &TTL)
            .await
            .expect("save at the limit");
        assert_eq!(store.load(&id).await.expect("load"), Some(at_limit.clone()));
        let over = state(&[("blob", &"x".repeat(31))]);
        let err = store
            .update(key(id.as_ref()), over.clone(), &TTL)
            .await
            .expect_err("one byte over");
        assert!(matches!(err, UpdateError::Serialization(_)), "{err:?}");
        let err = store.save(over, &TTL).await.expect_err("one byte over");
        assert!(matches!(err, SaveError::Serialization(_)), "{err:?}");
        assert_eq!(store.load(&id).await.expect("load"), Some(at_limit));
    }

    pub(super) async fn entry_names_never_collide_with_metadata(fx: Fixture) {
        let store = fx
            .store_with(RedisSessionStore::builder().absolute_timeout(Duration::from_millis(2000)));
        let odd = state(&[
            ("\0c", "\"not a timestamp\""),
            ("\0s", "1"),
            ("\0", "2"),
            ("", "3"),
            ("*{} \r\n", "\"\\u0000 é 日本\""),
        ]);
        let id = store.save(odd.clone(), &TTL).await.expect("save");
        assert_eq!(store.load(&id).await.expect("load"), Some(odd.clone()));
        let id = store.update(id, odd.clone(), &TTL).await.expect("update");
        assert_eq!(store.load(&id).await.expect("load"), Some(odd));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(
            store.load(&id).await.expect("load"),
            None,
            "an entry overwrote the creation time"
        );
    }

    /// The raw stored value of entry `name` of the session `id`.
    async fn raw(fx: &Fixture, id: &SessionKey, name: &str) -> Vec<u8> {
        fx.redis()
            .await
            .hget(fx.redis_key(id), name)
            .await
            .expect("HGET")
    }

    /// Writes `value` as the stored value of entry `name` of the session `id`.
    async fn plant(fx: &Fixture, id: &SessionKey, name: &str, value: Vec<u8>) {
        let () = fx
            .redis()
            .await
            .hset(fx.redis_key(id), name, value)
            .await
            .expect("HSET");
    }

    pub(super) async fn a_sealed_value_moved_to_another_session_is_no_session(fx: Fixture) {
        let store = fx.store();
        let alice = saved(&store, &[("cart", "[\"alice's\"]")]).await;
        let mallory = saved(&store, &[("cart", "[]")]).await;
        plant(&fx, &mallory, "cart", raw(&fx, &alice, "cart").await).await;
        assert_eq!(store.load(&mallory).await.expect("no error"), None);
        assert_eq!(
            fx.stored_keys().await,
            [fx.redis_key(&alice)],
            "not deleted"
        );
        assert!(store.load(&alice).await.expect("load").is_some());
    }

    pub(super) async fn a_sealed_value_moved_to_another_entry_is_no_session(fx: Fixture) {
        let store = fx.store();
        let id = saved(&store, &[("role", "\"admin\""), ("wish", "\"none\"")]).await;
        plant(&fx, &id, "wish", raw(&fx, &id, "role").await).await;
        assert_eq!(store.load(&id).await.expect("no error"), None);
        assert!(fx.stored_keys().await.is_empty(), "not deleted");
    }

    pub(super) async fn sealing_switches_either_way_and_every_session_reads_back(fx: Fixture) {
        let (on, off) = (
            fx.store(),
            fx.store_with(RedisSessionStore::builder().seal_entries(false)),
        );
        let entries = [("cart", "[1]"), ("n", "2")];
        let clear = saved(&off, &entries).await;
        assert_eq!(raw(&fx, &clear, "cart").await, b"[1]");
        assert_eq!(on.load(&clear).await.expect("load"), Some(state(&entries)));
        // A write seals every value, the unchanged ones too.
        let clear = updated(&on, clear, &[("cart", "[1,3]"), ("n", "2")]).await;
        for name in ["cart", "n"] {
            assert_eq!(raw(&fx, &clear, name).await[..2], [0, 1], "{name} sealed");
        }
        // And a store with sealing off still reads what was sealed.
        let sealed = saved(&on, &entries).await;
        assert_eq!(
            off.load(&sealed).await.expect("load"),
            Some(state(&entries))
        );
        assert_eq!(
            off.load(&clear).await.expect("load"),
            Some(state(&[("cart", "[1,3]"), ("n", "2")]))
        );
        // Whose next write puts every value in clear again.
        let sealed = updated(&off, sealed, &[("cart", "[1]"), ("n", "3")]).await;
        assert_eq!(raw(&fx, &sealed, "cart").await, b"[1]");
        assert_eq!(raw(&fx, &sealed, "n").await, b"3");
    }

    pub(super) async fn corrupt_stored_state_is_no_session_and_is_deleted(fx: Fixture) {
        let store = fx.store();
        let id = saved(&store, &[("k", "1")]).await;
        let () = fx
            .redis()
            .await
            .hset(fx.redis_key(&id), "k", &[0xffu8, 0xfe][..])
            .await
            .expect("HSET");
        assert_eq!(store.load(&id).await.expect("no error"), None);
        assert!(fx.stored_keys().await.is_empty(), "not deleted");

        // Something other than a hash at the key.
        let id = key(NEVER_ISSUED);
        let () = fx
            .redis()
            .await
            .set(fx.redis_key(&id), "a string")
            .await
            .expect("SET");
        assert_eq!(store.load(&id).await.expect("no error"), None);
        assert!(fx.stored_keys().await.is_empty(), "not deleted");
    }

    pub(super) async fn a_hash_without_a_creation_time_is_no_session_and_is_deleted(fx: Fixture) {
        let store = fx.store();
        let id = key(NEVER_ISSUED);
        let () = fx
            .redis()
            .await
            .hset(fx.redis_key(&id), "user", "\"mallory\"")
            .await
            .expect("HSET");
        assert_eq!(store.load(&id).await.expect("load"), None);
        assert!(
            fx.stored_keys().await.is_empty(),
            "the leftover hash was kept alive"
        );
    }

    pub(super) async fn a_creation_time_in_the_future_is_bounded(fx: Fixture) {
        let store = fx.store();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        let id = key(NEVER_ISSUED);
        let mut redis = fx.redis().await;
        // A clock a little ahead: accepted, as another instance's would be.
        let () = redis
            .hset_multiple(
                fx.redis_key(&id),
                &[("\0c", (now + 10_000).to_string()), ("k", "1".to_owned())],
            )
            .await
            .expect("HSET");
        assert!(store.load(&id).await.expect("load").is_some());
        // A day ahead (a clock far off, a hand-edited hash): that would outlive the lifetime.
        let () = redis
            .hset(fx.redis_key(&id), "\0c", (now + 86_400_000).to_string())
            .await
            .expect("HSET");
        fx.assert_no_session(&store, &id, "not deleted").await;
    }

    pub(super) async fn a_session_without_its_user_expires_after_the_anonymous_timeout(
        fx: Fixture,
    ) {
        let store = fx.store_with(
            RedisSessionStore::builder()
                .user_entry("user")
                .idle_timeout(Duration::from_secs(600))
                .anonymous_idle_timeout(Duration::from_millis(300)),
        );
        let visitor = store
            .save(state(&[("cart", "[1]")]), &TTL)
            .await
            .expect("save");
        let member = store
            .save(state(&[("user", "\"alice\""), ("cart", "[2]")]), &TTL)
            .await
            .expect("save");
        assert!(store.load(&visitor).await.expect("load").is_some());
        fx.until_gone(&visitor).await;
        assert_eq!(store.load(&visitor).await.expect("load"), None);
        assert!(store.load(&member).await.expect("load").is_some());
        assert!(
            fx.pttl(&member).await > 590_000,
            "the user's session has the idle timeout"
        );
    }

    pub(super) async fn delete_ends_the_session(fx: Fixture) {
        let store = fx.store();
        let id = saved(&store, &[("k", "1")]).await;
        store.delete(&id).await.expect("delete");
        fx.assert_no_session(&store, &id, "a key is left").await;
    }

    pub(super) async fn save_never_overwrites_an_existing_key(fx: Fixture) {
        // The save script is what guarantees this; ids never collide in practice, so run the
        // script itself against a key that exists.
        let script = redis::Script::new(concat!(
            include_str!("../../session-store/src/session/lua/prelude.lua"),
            include_str!("../../session-store/src/session/lua/save.lua"),
        ));
        let mut redis = fx.redis().await;
        let key = format!("{}s:x", fx.prefix);
        let () = redis.hset(&key, "k", "old").await.expect("HSET");
        let created: i64 = script
            .key(&key)
            .arg(60_000)
            .arg(0)
            .arg(1_800_000_000_000_u64)
            .arg(1_700_000_000_000_u64)
            .arg("")
            .arg("")
            .arg("k")
            .arg("new")
            .invoke_async(&mut redis)
            .await
            .expect("script");
        assert_eq!(created, 0);
        let value: String = redis.hget(&key, "k").await.expect("HGET");
        assert_eq!(value, "old");
    }

    pub(super) async fn a_server_without_the_scripts_gets_them_whole(fx: Fixture) {
        // Alone: other tests would put the scripts back between the flush and the saves.
        let fx = fx.alone();
        let store = fx.store();
        saved(&store, &[("k", "0")]).await;
        // What a restarted or newly promoted server looks like: no cached scripts.
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut fx.redis().await)
            .await
            .expect("SCRIPT FLUSH");
        let monitor = fx.monitor().await;
        let mut ids = Vec::new();
        for n in 0..10 {
            let saved = state(&[("k", &n.to_string())]);
            ids.push((store.save(saved.clone(), &TTL).await.expect("save"), saved));
        }
        let sent: Vec<String> = fx
            .seen(&monitor)
            .await
            .into_iter()
            .filter(|command| !command.from_script)
            .map(|command| command.name)
            .collect();
        let evals: Vec<usize> = (0..sent.len()).filter(|&at| sent[at] == "eval").collect();
        assert_eq!(
            sent.iter().filter(|name| *name == "evalsha").count(),
            10,
            "{sent:?}"
        );
        assert!(
            evals.iter().all(|&at| at > 0 && sent[at - 1] == "evalsha"),
            "the body only after a NOSCRIPT: {sent:?}"
        );
        assert!(
            (1..=fx.deployment.primaries()).contains(&evals.len()),
            "the body once per server that lacked it: {sent:?}"
        );
        for (id, saved) in ids {
            assert_eq!(store.load(&id).await.expect("load"), Some(saved));
        }
    }

    pub(super) async fn a_slow_answer_within_the_command_timeout_is_waited_for(fx: Fixture) {
        let fx = fx.alone();
        // redis-rs would cut an answer at 500 ms on its own; the store's timeout must govern.
        let store =
            fx.store_with(RedisSessionStore::builder().command_timeout(Duration::from_secs(2)));
        let id = saved(&store, &[("k", "1")]).await;
        let pause = Duration::from_millis(800);
        // Taken before the pause begins, so that the pause ends after `before + pause` however
        // long the steps in between take on a busy machine.
        let before = Instant::now();
        fx.deployment.pause(pause).await;
        assert!(
            store
                .load(&id)
                .await
                .expect("a load slower than 500 ms")
                .is_some()
        );
        assert!(before.elapsed() >= pause, "Redis was not paused");
    }

    pub(super) async fn a_slow_answer_past_the_command_timeout_fails_fast(fx: Fixture) {
        let fx = fx.alone();
        let timeout = Duration::from_millis(200);
        // Connections stay trusted, so the command is the only step that can wait.
        let store = fx.store_with(
            RedisSessionStore::builder()
                .command_timeout(timeout)
                .trust_window(Duration::from_secs(3600)),
        );
        let id = saved(&store, &[("k", "1")]).await;
        let pause = Duration::from_millis(3000);
        fx.deployment.pause(pause).await;
        let started = Instant::now();
        let err = store.load(&id).await.expect_err("a timeout");
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "took {:?}",
            started.elapsed()
        );
        assert_command_timeout(err, timeout, "the command timeout");
        tokio::time::sleep((pause + Duration::from_millis(200)).saturating_sub(started.elapsed()))
            .await;
        assert!(store.load(&id).await.expect("recovered").is_some());
    }

    pub(super) async fn different_prefixes_do_not_see_each_other(fx: Fixture) {
        let ours = fx.store();
        let theirs = RedisSessionStore::builder().key_prefix(format!("{}other:", fx.prefix));
        let theirs = fx.deployment.store_with(theirs);
        let id = ours.save(state(&[("k", "1")]), &TTL).await.expect("save");
        assert_eq!(theirs.load(&id).await.expect("load"), None);
        assert!(ours.load(&id).await.expect("load").is_some());
    }
}

/// Stamps one `#[tokio::test]` per case, each on a fresh fixture from `$fixture`.
macro_rules! acceptance_suite {
    ($fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                super::cases::$case($fixture()).await;
            }
        )*
    };
}

macro_rules! every_case {
    ($fixture:path) => {
        acceptance_suite!($fixture;
            saved_state_loads_back,
            a_state_of_many_entries_round_trips,
            ids_are_256_bit_url_safe_and_fresh,
            redis_holds_a_hash_of_the_id_and_sealed_entries,
            with_sealing_off_redis_holds_entries_as_given,
            a_sealed_value_moved_to_another_session_is_no_session,
            a_sealed_value_moved_to_another_entry_is_no_session,
            sealing_switches_either_way_and_every_session_reads_back,
            malformed_keys_are_no_session_and_never_reach_redis,
            a_never_issued_key_is_no_session,
            load_slides_the_idle_expiry,
            an_idle_session_expires,
            the_absolute_lifetime_ends_an_active_session,
            an_update_past_the_absolute_lifetime_writes_nothing,
            update_replaces_the_entries,
            update_after_delete_does_not_bring_the_session_back,
            update_after_expiry_does_not_bring_the_session_back,
            update_ttl_slides_the_expiry,
            update_ttl_on_an_ended_session_creates_nothing,
            oversized_state_is_refused_and_the_stored_state_kept,
            a_state_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not,
            entry_names_never_collide_with_metadata,
            corrupt_stored_state_is_no_session_and_is_deleted,
            delete_ends_the_session,
            a_hash_without_a_creation_time_is_no_session_and_is_deleted,
            a_creation_time_in_the_future_is_bounded,
            a_session_without_its_user_expires_after_the_anonymous_timeout,
            save_never_overwrites_an_existing_key,
            a_server_without_the_scripts_gets_them_whole,
            different_prefixes_do_not_see_each_other,
            a_slow_answer_within_the_command_timeout_is_waited_for,
            a_slow_answer_past_the_command_timeout_fails_fast,
        );
    };
}

mod single_node {
    use super::Fixture;

    every_case!(Fixture::single_node);
}

mod cluster {
    use super::Fixture;

    every_case!(Fixture::cluster);
}

mod sentinel {
    use super::Fixture;

    every_case!(Fixture::sentinel);
}

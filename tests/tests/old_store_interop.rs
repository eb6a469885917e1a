//! The store's legacy setting against the real thing: actix-session 0.11's own
//! `RedisSessionStore` (its redis-rs connection manager) on the same server, each store
//! reading what the other wrote, through both steps of a switch.

use std::collections::HashMap;

use actix_session::storage::{RedisSessionStore as OldStore, SessionKey, SessionStore};
use actix_web::cookie::time::Duration as CookieDuration;
use integration_tests::RedisServer;
use session_store::{LegacySessions, RedisSessionStore};

const TTL: CookieDuration = CookieDuration::hours(1);

type State = HashMap<String, String>;

fn state(entries: &[(&str, &str)]) -> State {
    entries
        .iter()
        .map(|(name, value)| ((*name).to_owned(), format!("\"{value}\"")))
        .collect()
}

fn key(id: &SessionKey) -> SessionKey {
    SessionKey::try_from(id.as_ref().to_owned()).expect("a valid key")
}

/// The old store with a key function, as an application may have set it up, and ours told
/// the same function.
async fn stores(server: &RedisServer, legacy: LegacySessions) -> (OldStore, RedisSessionStore) {
    let old = OldStore::builder(server.url())
        .cache_keygen(|key| format!("app:{key}"))
        .build()
        .await
        .expect("the old store connects");
    let new = server.store_with(
        RedisSessionStore::builder()
            .user_entry("user")
            .legacy_sessions(legacy.key_function(|key| format!("app:{key}"))),
    );
    (old, new)
}

#[actix_web::test]
async fn interoperating_each_store_reads_and_writes_what_the_other_wrote() {
    let server = RedisServer::start();
    let (old, new) = stores(&server, LegacySessions::interoperate()).await;

    let made_old = old
        .save(state(&[("user", "ann")]), &TTL)
        .await
        .expect("save");
    assert_eq!(
        new.load(&made_old).await.expect("load"),
        Some(state(&[("user", "ann")]))
    );
    let changed = state(&[("user", "ann"), ("theme", "dark")]);
    new.update(key(&made_old), changed.clone(), &TTL)
        .await
        .expect("update");
    assert_eq!(old.load(&made_old).await.expect("load"), Some(changed));

    let made_new = new
        .save(state(&[("user", "ben")]), &TTL)
        .await
        .expect("save");
    assert_eq!(
        old.load(&made_new).await.expect("load"),
        Some(state(&[("user", "ben")]))
    );
    let written_old = old
        .update(
            key(&made_new),
            state(&[("user", "ben"), ("cart", "1")]),
            &TTL,
        )
        .await
        .expect("update");
    assert_eq!(written_old.as_ref(), made_new.as_ref());
    assert_eq!(
        new.load(&made_new).await.expect("load"),
        Some(state(&[("user", "ben"), ("cart", "1")]))
    );

    // A logout on either kind ends the session on both.
    old.delete(&made_old).await.expect("delete");
    assert_eq!(new.load(&made_old).await.expect("load"), None);
    new.delete(&made_new).await.expect("delete");
    assert_eq!(old.load(&made_new).await.expect("load"), None);
    // Nothing the new store does brings it back...
    let after = new
        .update(key(&made_new), state(&[("user", "ben")]), &TTL)
        .await;
    assert_eq!(after.expect("update").as_ref(), made_new.as_ref());
    assert_eq!(old.load(&made_new).await.expect("load"), None);
    assert_eq!(server.keys("app:*").await, Vec::<String>::new());
    // ... while the old store's own update saves a write that lost to a logout again, under
    // a new key: its race, which stays while old instances run.
    let revived = old
        .update(key(&made_new), state(&[("user", "ben")]), &TTL)
        .await
        .expect("update");
    assert_ne!(revived.as_ref(), made_new.as_ref());
    assert!(new.load(&revived).await.expect("load").is_some());
}

#[actix_web::test]
async fn migrating_moves_what_the_old_store_wrote() {
    let server = RedisServer::start();
    let (old, new) = stores(&server, LegacySessions::migrate()).await;
    let made_old = old
        .save(state(&[("user", "cal"), ("theme", "dark")]), &TTL)
        .await
        .expect("save");
    assert_eq!(
        new.load(&made_old).await.expect("load"),
        Some(state(&[("user", "cal"), ("theme", "dark")]))
    );
    assert_eq!(old.load(&made_old).await.expect("load"), None, "moved");
    assert_eq!(server.keys("app:*").await, Vec::<String>::new());
    let made_new = new
        .save(state(&[("user", "cal")]), &TTL)
        .await
        .expect("save");
    assert_eq!(
        made_new.as_ref().len(),
        43,
        "new sessions are the store's own"
    );
}

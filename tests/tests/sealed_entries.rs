//! What Redis alone can read of a session, through the real demo binary: three instances on
//! one Redis, a user signed in with a display name and a form token in the session. Every key
//! and value read back out of Redis, and the server's own RDB dump, hold neither; every
//! instance still reads the session whole.

use integration_tests::{
    RedisServer,
    demo::{ApiClient, Demo},
};
use redis::AsyncCommands as _;

/// The display name stored in the profile: a string no key, field or sealed value contains
/// by chance.
const MARKER: &str = "marker-5ea1ed-d15p1ay-name";

/// Every key in `server` with every byte of its value, whatever its type.
async fn dump(server: &RedisServer) -> Vec<(String, Vec<u8>)> {
    let mut redis = server.connection().await;
    let keys: Vec<String> = redis.keys("*").await.expect("KEYS");
    let mut all = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .expect("TYPE");
        let parts: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis.get(&key).await.expect("GET")],
            "hash" => {
                let fields: Vec<(Vec<u8>, Vec<u8>)> = redis.hgetall(&key).await.expect("HGETALL");
                fields.into_iter().flat_map(|(f, v)| [f, v]).collect()
            }
            "zset" => redis.zrange(&key, 0, -1).await.expect("ZRANGE"),
            "list" => redis.lrange(&key, 0, -1).await.expect("LRANGE"),
            "set" => redis.smembers(&key).await.expect("SMEMBERS"),
            other => panic!("{key}: a {other} the dump does not read"),
        };
        all.push((key, parts.concat()));
    }
    all
}

/// The server's RDB file after a `SAVE`, uncompressed (so that a string in it would show).
async fn rdb(server: &RedisServer) -> Vec<u8> {
    let mut redis = server.connection().await;
    let () = redis::cmd("SAVE")
        .query_async(&mut redis)
        .await
        .expect("SAVE");
    let (_, name): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("dbfilename")
        .query_async(&mut redis)
        .await
        .expect("CONFIG GET");
    std::fs::read(server.dir().join(name)).expect("the RDB file")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn redis_and_its_dump_hold_no_profile_and_no_form_token_and_every_instance_reads_both() {
    let server = RedisServer::start_with(&["--rdbcompression", "no"]);
    let demo = Demo::launch_on(&server, 3, &[]);
    let api = ApiClient::default();
    let login = api.log_in(&demo, 0, "alice", "alice-password");
    assert_eq!(login.status, 200, "{login:?}");
    let cookie = login.cookie.expect("a session cookie");
    let profile = api.get_page(&demo.url(1, "/profile"), &[&cookie]);
    let token = profile.form_token().expect("a form token").to_owned();
    let saved = api.post_form(
        &demo.url(2, "/profile"),
        &[&cookie],
        &[("display_name", MARKER), ("csrf", &token)],
    );
    assert!(saved.status < 400, "{saved:?}");

    for index in 0..3 {
        let me = api.call("GET", &demo, index, "/api/me", Some(&cookie));
        assert_eq!(me.json["display_name"], MARKER, "instance {index}: {me:?}");
        let page = api.get_page(&demo.url(index, "/profile"), &[&cookie]);
        assert_eq!(page.form_token(), Some(token.as_str()), "instance {index}");
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (keys, file) = runtime.block_on(async { (dump(&server).await, rdb(&server).await) });
    let everything: Vec<u8> = keys
        .iter()
        .flat_map(|(key, value)| [key.as_bytes(), value].concat())
        .collect();
    for (what, secret) in [("display name", MARKER), ("form token", token.as_str())] {
        assert!(
            !contains(&everything, secret),
            "the {what} is readable in Redis"
        );
        assert!(
            !contains(&file, secret),
            "the {what} is readable in the RDB file"
        );
    }
    // What stays in clear, by design (the index and the sessions list read it without a
    // cookie), is there: the dump and the file are read right.
    assert!(contains(&everything, "\"alice\""), "the user entry");
    assert!(contains(&file, "\"alice\""), "the user entry in the file");
}

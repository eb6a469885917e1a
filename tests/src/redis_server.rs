//! A `redis-server` process of the test's own, with ways to inspect it.

use std::ops::{Deref, DerefMut};

/// A private `redis-server` on a free loopback port, killed when dropped (local-redis's, with a
/// test's conveniences on top).
pub struct RedisServer(local_redis::RedisServer);

impl RedisServer {
    /// Starts a server that keeps nothing on disk; panics, saying how to install
    /// `redis-server`, when it is missing.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments.
    pub fn start_with(args: &[&str]) -> Self {
        Self::try_start_with(args)
            .unwrap_or_else(|err| panic!("{err}. `scripts/test` installs it for you."))
    }

    /// Starts a server with extra `redis-server` arguments, or says why it did not start.
    ///
    /// # Errors
    /// When `redis-server` is missing or does not come up.
    pub fn try_start_with(args: &[&str]) -> Result<Self, local_redis::Error> {
        local_redis::RedisServer::start(args).map(Self)
    }

    /// A session store with the default settings on this server.
    pub fn store(&self) -> session_store::RedisSessionStore {
        self.store_with(session_store::RedisSessionStore::builder())
    }

    /// A session store from `builder` on this server.
    pub fn store_with(
        &self,
        builder: session_store::RedisSessionStoreBuilder,
    ) -> session_store::RedisSessionStore {
        builder
            .build_with_url(&self.url())
            .expect("a valid loopback URL")
    }

    /// A client for inspecting the server from the test.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a valid loopback URL")
    }

    /// A connection for inspecting the server from the test.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .expect("the test's own Redis answers")
    }

    /// The keys matching `pattern` (`KEYS`), in no particular order.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        redis::AsyncCommands::keys(&mut self.connection().await, pattern)
            .await
            .expect("KEYS")
    }

    /// Makes the server hold every client's commands for `duration` (`CLIENT PAUSE ... ALL`):
    /// a Redis that is up but does not answer.
    pub async fn pause(&self, duration: std::time::Duration) {
        let () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(u64::try_from(duration.as_millis()).expect("a short pause"))
            .arg("ALL")
            .query_async(&mut self.connection().await)
            .await
            .expect("CLIENT PAUSE");
    }
}

impl Deref for RedisServer {
    type Target = local_redis::RedisServer;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for RedisServer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

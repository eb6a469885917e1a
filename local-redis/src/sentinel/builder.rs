//! Settings of a Sentinel setup, and starting one: the primary, its replica, then the sentinels.

use std::time::Duration;

use super::{MASTER_NAME, RedisSentinels};
use crate::{Error, RedisServer, server::Launch};

/// Sentinels, and how many of them must agree that the primary is down.
const SENTINELS: usize = 3;
const QUORUM: usize = 2;

/// The settings of a Sentinel setup to start; [`RedisSentinels::builder`] makes one.
#[derive(Debug, Clone)]
#[must_use]
pub struct SentinelsBuilder {
    down_after: Duration,
    failover_timeout: Duration,
    ready_timeout: Duration,
    args: Vec<String>,
}

impl Default for SentinelsBuilder {
    fn default() -> Self {
        Self {
            down_after: Duration::from_millis(5000),
            failover_timeout: Duration::from_millis(3000),
            ready_timeout: Duration::from_secs(30),
            args: Vec::new(),
        }
    }
}

impl SentinelsBuilder {
    /// `down-after-milliseconds`: how long the primary may not answer before a sentinel counts
    /// it as down (5 s by default, where Sentinel's own is 30 s). The default is long enough
    /// that a server stalled by a busy machine is not failed over when nothing was killed; a
    /// test that kills the primary and wants a quick failover sets 1 to 2 s here.
    pub fn down_after(mut self, duration: Duration) -> Self {
        self.down_after = duration;
        self
    }

    /// `failover-timeout`: how long a failover may take, and twice this the wait before the
    /// sentinels try again after one failed (3 s by default, where Sentinel's own is 3 min).
    pub fn failover_timeout(mut self, timeout: Duration) -> Self {
        self.failover_timeout = timeout;
        self
    }

    /// How long [`start`](Self::start) and the `wait_` methods of [`RedisSentinels`] wait
    /// (30 s by default).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Extra `redis-server` arguments for the two data servers (not the sentinels).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|&arg| arg.to_owned()).collect();
        self
    }

    /// Starts the primary, its replica and the sentinels, and waits until the setup is
    /// settled: the sentinels agree on the primary and know the replica and each other, and
    /// the replica is in sync.
    ///
    /// # Errors
    /// When `redis-server` is missing, a process does not start, or the setup does not settle
    /// within the ready timeout.
    pub fn start(self) -> Result<RedisSentinels, Error> {
        let primary = self.start_server(String::new())?;
        let replica = self.start_server(format!("replicaof 127.0.0.1 {}\n", primary.port()))?;
        let monitor = self.sentinel_config(primary.port());
        let sentinels = (0..SENTINELS)
            .map(|_| start_sentinel(&monitor))
            .collect::<Result<Vec<_>, _>>()?;
        let setup = RedisSentinels {
            servers: vec![primary, replica],
            sentinels,
            ready_timeout: self.ready_timeout,
        };
        setup.wait_until_settled()?;
        Ok(setup)
    }

    /// A data server whose `redis.conf` starts as `config`. The replica's `replicaof` goes in
    /// the file, not on the command line, which would override what the sentinels write there
    /// (`CONFIG REWRITE`) whenever it restarts.
    fn start_server(&self, config: String) -> Result<RedisServer, Error> {
        let mut args = self.args.clone();
        // A replica syncs at once instead of after the default 5 s wait for others.
        args.extend(["--repl-diskless-sync-delay".to_owned(), "0".to_owned()]);
        RedisServer::launch(|| {
            Ok(Launch {
                config: Some(("redis.conf", config.clone())),
                args: args.clone(),
            })
        })
    }

    fn sentinel_config(&self, primary_port: u16) -> String {
        format!(
            "sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {QUORUM}\n\
             sentinel down-after-milliseconds {MASTER_NAME} {}\n\
             sentinel failover-timeout {MASTER_NAME} {}\n",
            self.down_after.as_millis(),
            self.failover_timeout.as_millis(),
        )
    }
}

/// A sentinel, with a `sentinel.conf` of its own that it can rewrite (Sentinel refuses to run
/// without one: it records what it learns there).
fn start_sentinel(config: &str) -> Result<RedisServer, Error> {
    RedisServer::launch(|| {
        Ok(Launch {
            config: Some(("sentinel.conf", config.to_owned())),
            args: vec!["--sentinel".to_owned()],
        })
    })
}

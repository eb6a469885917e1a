//! A Sentinel setup: a primary, its replica and three sentinels watching them, each a
//! `redis-server` process on a free loopback port, all killed when dropped.

mod builder;
mod health;

use std::time::Duration;

pub use self::builder::SentinelsBuilder;
use crate::{Error, RedisServer, wait};

/// The name the sentinels know the primary by.
const MASTER_NAME: &str = "mymaster";

/// A running primary and replica, watched by three sentinels (quorum 2).
///
/// The data servers are named by their index in [`servers`](Self::servers): 0 started as the
/// primary, 1 as its replica. A failover swaps their roles, not their indexes; which one is
/// primary now is asked of the sentinels ([`primary`](Self::primary)).
#[derive(Debug)]
pub struct RedisSentinels {
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
    ready_timeout: Duration,
}

impl RedisSentinels {
    /// Starts the setup with the default settings and waits until it is settled.
    ///
    /// # Errors
    /// When `redis-server` is missing or the setup does not settle.
    pub fn start() -> Result<Self, Error> {
        Self::builder().start()
    }

    /// A builder, for other Sentinel timings and extra arguments.
    pub fn builder() -> SentinelsBuilder {
        SentinelsBuilder::default()
    }

    /// The name the sentinels know the primary by (`mymaster`), which clients ask them about.
    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    /// The two data servers: 0 started as the primary, 1 as its replica.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The three sentinels.
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// `redis://127.0.0.1:{port}` of every sentinel: what a Sentinel client starts from
    /// (deadpool-redis's `sentinel::Config::from_urls`, with [`master_name`](Self::master_name)).
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The server that is primary now, according to the first running sentinel
    /// (`SENTINEL get-master-addr-by-name`).
    ///
    /// # Errors
    /// When no sentinel runs or answers, or it names a server that is none of ours.
    pub fn primary(&self) -> Result<usize, Error> {
        let sentinel = self
            .sentinels
            .iter()
            .find(|sentinel| sentinel.is_running())
            .ok_or_else(|| Error::Topology("no sentinel runs".to_owned()))?;
        let port = health::named_primary(sentinel)?;
        health::index_of(&self.servers, port)
            .ok_or_else(|| Error::Topology(format!("127.0.0.1:{port} is none of our servers")))
    }

    /// Kills data server `index`, as a crash would. When it is the primary, the sentinels
    /// promote the other after `down-after-milliseconds` and an election.
    ///
    /// # Panics
    /// When there is no such server.
    pub fn stop_server(&mut self, index: usize) {
        self.servers[index].stop();
    }

    /// Starts data server `index` again, on its port and with its configuration file (which
    /// the sentinels rewrite when they reconfigure it). An old primary comes back as a
    /// primary, until the sentinels turn it into a replica: [`wait_until_settled`](Self::wait_until_settled).
    ///
    /// # Errors
    /// When it does not answer within ten seconds.
    ///
    /// # Panics
    /// When there is no such server.
    pub fn restart_server(&mut self, index: usize) -> Result<(), Error> {
        self.servers[index].restart()
    }

    /// Kills sentinel `index`.
    ///
    /// # Panics
    /// When there is no such sentinel.
    pub fn stop_sentinel(&mut self, index: usize) {
        self.sentinels[index].stop();
    }

    /// Starts sentinel `index` again, with its rewritten `sentinel.conf` (so with its identity
    /// and what it had learnt).
    ///
    /// # Errors
    /// When it does not answer within ten seconds.
    ///
    /// # Panics
    /// When there is no such sentinel.
    pub fn restart_sentinel(&mut self, index: usize) -> Result<(), Error> {
        self.sentinels[index].restart()
    }

    /// Waits until every running sentinel names server `index` as the primary and that server
    /// says it is one: the end of a failover, as clients see it.
    ///
    /// # Errors
    /// When that does not happen within the builder's `ready_timeout` (30 s by default).
    pub fn wait_for_primary(&self, index: usize) -> Result<(), Error> {
        let what = format!("the sentinels to agree that server {index} is the primary");
        wait::until(&what, self.ready_timeout, || {
            let primary = health::agreed_primary(&self.servers, &self.sentinels)?;
            wait::ensure(primary == index, || {
                format!("they agree on server {primary}")
            })
        })
    }

    /// Waits until the setup is settled: every running sentinel names the same running primary
    /// and knows the others and the replica, and every other running server replicates from
    /// that primary with its link up. After a failover with both servers running, that
    /// includes the sentinels turning the old primary into a replica, which takes them about
    /// ten seconds (their `INFO` period). Returns the index of that primary, as it was when
    /// everything else was checked: a later look at a role could see another failover.
    ///
    /// # Errors
    /// When that does not happen within the builder's `ready_timeout` (30 s by default).
    pub fn wait_until_settled(&self) -> Result<usize, Error> {
        wait::until("the Sentinel setup to settle", self.ready_timeout, || {
            health::check_settled(&self.servers, &self.sentinels)
        })
    }

    /// What each sentinel wrote to its log so far (its `+sdown`, `+switch-master`,
    /// `+convert-to-slave` events), for a test's failure message.
    pub fn sentinel_logs(&self) -> String {
        self.sentinels
            .iter()
            .enumerate()
            .map(|(index, sentinel)| format!("--- sentinel {index}\n{}", sentinel.log()))
            .collect()
    }
}

//! Private Redis processes on free loopback ports, for the test suites, the demo and the
//! benchmark: the one place in the workspace that starts `redis-server`.
//!
//! Three shapes, each killed (every process of it) when its owner is dropped, also when a test
//! panics:
//!
//! - [`RedisServer`]: one server, which can be stopped and restarted with its data;
//! - [`RedisCluster`]: three primaries with a replica each, joined by `redis-cli --cluster
//!   create`; nodes can be stopped (their replica takes over) and restarted;
//! - [`RedisSentinels`]: a primary, its replica and three sentinels; any of them can be
//!   stopped and restarted.
//!
//! Nothing here talks to a Redis someone else started. Every process keeps its files in a
//! temporary folder of its own and keeps nothing on disk unless its arguments ask for it.
//!
//! # Getting started
//!
//! ```no_run
//! # fn main() -> Result<(), local_redis::Error> {
//! use local_redis::{RedisCluster, RedisSentinels, RedisServer};
//!
//! let mut server = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"])?;
//! let url = server.url(); // redis://127.0.0.1:{a free port}
//! server.stop(); // as an outage would
//! server.restart()?; // same port, same folder: the data is back
//!
//! let mut cluster = RedisCluster::start()?;
//! let urls = cluster.urls(); // for a cluster client
//! let primary = cluster.primary_for_key("session:abc")?;
//! cluster.stop(primary);
//! cluster.wait_until_ok()?; // its replica took over
//! cluster.restart(primary)?;
//! cluster.wait_until_ok()?; // it is back, as a replica
//!
//! let mut sentinels = RedisSentinels::start()?;
//! let (urls, name) = (sentinels.sentinel_urls(), sentinels.master_name());
//! sentinels.stop_server(0); // the first primary
//! sentinels.wait_for_primary(1)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Programs
//!
//! `redis-server` (which also runs the sentinels) and, for clusters, `redis-cli` come from
//! `PATH`, unless `REDIS_SERVER_BIN` or `REDIS_CLI_BIN` point elsewhere; both are read when a
//! process starts, not when this crate is built. A missing program is an
//! [`Error::NotInstalled`] that says how to install it.
//!
//! # Timings
//!
//! CI runs several of these per suite, so their start-up matters. Measured by this crate's
//! tests (`cargo test -p local-redis -- --nocapture`) on the project's 2-core machine, with
//! two other builds running beside them:
//!
//! | what | time |
//! |---|---|
//! | a single server answers | TODO |
//! | a cluster is ok (six nodes started, created, replicas in sync) | TODO |
//! | a cluster primary stopped until its replica serves (node timeout 1 s) | TODO |
//! | the old primary restarted until it is a replica in sync | TODO |
//! | a Sentinel setup settles (sentinels agree, know each other and the replica) | TODO |
//! | `SENTINEL FAILOVER` until all sentinels name the new primary | TODO |
//! | the Sentinel primary stopped until all sentinels name the replica (down-after 1 s) | TODO |
//!
//! Most of a cluster's start is `redis-cli --cluster create`, which waits a second for the
//! nodes to meet; most of a Sentinel setup's, the sentinels finding each other through hello
//! messages they send every two seconds. Both are Redis's own fixed periods.

mod cluster;
mod error;
mod ports;
mod probe;
mod programs;
mod sentinel;
mod server;
mod wait;

pub use crate::{
    cluster::{ClusterBuilder, RedisCluster},
    error::Error,
    ports::{free_port, wait_until_listening},
    sentinel::{RedisSentinels, SentinelsBuilder},
    server::RedisServer,
};

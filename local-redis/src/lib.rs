//! Private Redis processes on free loopback ports, for the test suites, the demo and the
//! benchmark: the one place in the workspace that starts `redis-server`.
//!
//! Three shapes, each killed (every process of it) when its owner is dropped, also when a test
//! panics:
//!
//! - [`RedisServer`]: one server, which can be stopped and restarted with its data;
//! - [`RedisCluster`]: three primaries with a replica each (or other numbers), joined by
//!   `redis-cli --cluster create`; nodes can be stopped (their replica takes over) and
//!   restarted, a primary added (`redis-cli --cluster add-node`), slots moved between
//!   primaries (`redis-cli --cluster reshard`) or held mid-migration ([`SlotMigration`]);
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
//! let added = cluster.add_primary()?; // node 6, serving nothing yet
//! cluster.reshard(&cluster.primaries()?, added, 4096)?; // a quarter of the slots, keys and all
//! let slot = 100;
//! let migration = cluster.begin_migration([slot], added)?;
//! migration.move_keys(10)?; // clients now get ASK for the keys that moved
//! migration.finish()?;
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
//! tests (`cargo test -p local-redis -- --nocapture`, three runs) on the project's 2-core
//! machine, with other people's builds keeping it busy (load average 8 to 10), with the
//! default settings:
//!
//! | what | time |
//! |---|---|
//! | a single server answers (or answers again after a restart) | 0.05 s |
//! | a cluster is ok: six nodes started, `--cluster create`, replicas in sync | 2.15 s |
//! | a cluster primary stopped until its replica serves and every node agrees | 2.2 to 2.5 s |
//! | the stopped cluster primary restarted until it is a replica in sync | 0.1 to 0.2 s |
//! | a Sentinel setup settles: sentinels agree, know each other and the replica | 2.3 s |
//! | `SENTINEL FAILOVER` until every sentinel names the replica | 1.1 to 1.2 s |
//! | the Sentinel primary stopped until every sentinel names the replica | 2.25 to 2.35 s |
//! | the old Sentinel primary (demoted, or stopped and restarted) until it is a replica | 10.1 s |
//! | a stopped sentinel restarted until the setup is settled | 0.06 s |
//! | `redis-cli --cluster reshard` of 500 slots holding 300 keys in all, until every node agrees | 0.3 s |
//! | `redis-cli --cluster add-node` until every node knows the new primary | 2.05 s |
//! | `reshard` of 4096 slots from three primaries to the new one | 2.3 to 2.9 s |
//! | a cluster of one primary (or two with a replica each) is ok | 2.05 to 2.1 s |
//!
//! The fixed costs are Redis's own: `redis-cli --cluster create` waits a second for the nodes
//! to meet, and a cluster primary reports `cluster_state:ok` only after a rejoin delay of one
//! node timeout (so nodes form the cluster with a 1 s one, and take the one asked for once it
//! is ok); sentinels find each other through hello messages sent every two seconds, and look at
//! a returning primary on their ten-second `INFO` round before turning it into a replica.
//!
//! A shorter node timeout or `down-after` makes failovers faster, and spurious ones (a node
//! stalled that long by a busy machine) likelier: a test suite of a hundred tests on two cores
//! stalls processes for a second now and then. So both default to 5 s, and the failover
//! timings above are those of tests that kill a node with 1 to 2 s set on the builder.

mod cluster;
mod error;
mod ports;
mod probe;
mod programs;
mod sentinel;
mod server;
mod wait;

pub use crate::{
    cluster::{ClusterBuilder, RedisCluster, SlotMigration},
    error::Error,
    ports::{free_port, free_ports, wait_until_listening},
    programs::start_apart_from_the_terminal,
    sentinel::{RedisSentinels, SentinelsBuilder},
    server::RedisServer,
};

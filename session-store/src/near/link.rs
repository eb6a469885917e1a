//! The invalidation link: one RESP3 connection to each server that holds sessions, each
//! tracking the session keys' prefix (`CLIENT TRACKING ON BCAST PREFIX`), on a thread of its
//! own so that a busy application never delays an invalidation.
//!
//! Which servers: the single server; behind Sentinel the primary and its replicas; on a
//! cluster every node that is not failed, replicas included. A replica sends invalidations
//! for the writes it replicates, so when a failover promotes it, its link was there before its
//! first write. With every heartbeat, one tracked server is asked for the set again (a
//! cluster node's `CLUSTER NODES`, the Sentinel primary's `ROLE`, on its tracking
//! connection); a change of the set (a node added or failed, a primary demoted) rebuilds the
//! link.
//!
//! Behind Sentinel, a switch of primary the sentinels announce rebuilds the link too (within
//! a heartbeat): copies read from the old primary, which goes on taking writes until the
//! sentinels reconfigure it, do not outlive the switch.
//!
//! Every [`HEARTBEAT`] each connection is sent a `PING`: on one connection invalidations and
//! replies arrive in order, so once every `PONG` is in, every change Redis made before the
//! `PING`s were sent has reached the cache. A connection that closes, a `PING` that fails or
//! takes longer than [`LINK_SILENCE`](super::LINK_SILENCE), or a changed set of servers puts the
//! link down (nothing served, every copy dropped) until a new one is up. Each connection's
//! socket is watched (see [`watch`](super::watch)), so that a read never serves a copy while
//! an invalidation waits in it.

use std::{
    io,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use super::{
    LINK_SILENCE, NearCache,
    watch::{Watch, Watched},
};
use crate::backend::pool::Pool;
use futures_util::future::try_join_all;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ErrorKind, ProtocolVersion, PushInfo,
    PushKind, RedisError, RedisResult, Value, aio::MultiplexedConnection,
};

/// How often each tracking connection is sent a `PING`.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(100);

/// How long the link may fail to come up before it says so.
const QUIET_FOR: Duration = Duration::from_secs(10);

/// The longest pause between two attempts to bring the link up.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Starts the link of `cache` for the sessions under `prefix`, on the servers `pool` reaches,
/// on a thread of its own that ends once the cache is dropped.
pub(crate) fn start(cache: &Arc<NearCache>, pool: Pool, prefix: String) {
    let cache = Arc::downgrade(cache);
    let started = std::thread::Builder::new()
        .name("session-store-near-cache".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the near cache's link");
            runtime.block_on(run(&cache, &pool, &prefix));
        });
    if let Err(err) = started {
        tracing::error!(error = %err, "near cache: no thread for its link, so it serves nothing");
    }
}

/// Brings the link up again and again, until the cache is dropped. Says so once when a link
/// that was up goes down, and once when none has come up for [`QUIET_FOR`] (a store started
/// before its Redis is no news until then).
async fn run(cache: &Weak<NearCache>, pool: &Pool, prefix: &str) {
    let mut backoff = HEARTBEAT;
    let mut outage: Option<(Instant, bool)> = None;
    loop {
        let generation = match cache.upgrade() {
            Some(cache) => cache.next_generation(),
            None => return,
        };
        let Err(err) = track(cache, pool, prefix, generation).await else {
            return;
        };
        if let Some(cache) = cache.upgrade() {
            cache.link_down(generation);
        }
        if err.was_up {
            // A new outage: the link was up until now.
            tracing::warn!(error = %err, "near cache: link down, reads go to Redis until it is back");
            outage = Some((Instant::now(), true));
            backoff = HEARTBEAT;
        }
        let (since, said) = outage.get_or_insert((Instant::now(), false));
        if !*said && since.elapsed() >= QUIET_FOR {
            tracing::warn!(error = %err, "near cache: no link yet, reads go to Redis");
            *said = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why a link ended, and whether it had been up.
struct Broken {
    reason: String,
    was_up: bool,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Connects to every server, brings the link of `generation` up and keeps it beating; returns
/// `Ok` once the cache is dropped, or why the link broke.
async fn track(
    cache: &Weak<NearCache>,
    pool: &Pool,
    prefix: &str,
    generation: u64,
) -> Result<(), Broken> {
    let broken = |was_up: bool| {
        move |err: redis::RedisError| Broken {
            reason: err.to_string(),
            was_up,
        }
    };
    let manager = pool.manager();
    let switches = manager.switches();
    let servers = manager.session_servers().await.map_err(broken(false))?;
    let mut links = Vec::with_capacity(servers.len());
    for server in &servers {
        links.push(
            Tracking::connect(cache, server, prefix, generation)
                .await
                .map_err(broken(false))?,
        );
    }
    {
        let Some(cache) = cache.upgrade() else {
            return Ok(());
        };
        let watches = links.iter().map(|link| Arc::clone(&link.watch)).collect();
        if !cache.link_up(generation, watches, || links.iter().all(Tracking::is_alive)) {
            return Err(Broken {
                reason: "a connection closed as the link came up".to_owned(),
                was_up: false,
            });
        }
    }
    let tracked = addresses(&servers);
    // Behind Sentinel the primary is the last of the servers; on a cluster any node answers.
    let asked = links.len() - 1;
    let primary = servers[asked].addr().to_string();
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let sent = Instant::now();
        let beats = links.iter_mut().map(Tracking::beat);
        let beat = tokio::time::timeout(LINK_SILENCE, try_join_all(beats)).await;
        let Some(cache) = cache.upgrade() else {
            return Ok(());
        };
        if !cache.is_current(generation) {
            return Err(Broken {
                reason: "a tracking connection closed".to_owned(),
                was_up: true,
            });
        }
        if manager.switches() != switches {
            // Copies read from the old primary, which goes on taking writes until it is
            // reconfigured, must not outlive the switch.
            return Err(Broken {
                reason: "the sentinels switched primary".to_owned(),
                was_up: true,
            });
        }
        match beat {
            Ok(Ok(_)) => cache.heard(sent),
            Ok(Err(err)) => return Err(broken(true)(err)),
            Err(_) => {
                return Err(Broken {
                    reason: format!("no answer to a heartbeat within {LINK_SILENCE:?}"),
                    was_up: true,
                });
            }
        }
        let seen = manager.session_addresses_from(&mut links[asked].connection, &primary);
        let seen = tokio::time::timeout(LINK_SILENCE, seen)
            .await
            .unwrap_or_else(|_| Err(io::Error::from(io::ErrorKind::TimedOut).into()))
            .map_err(broken(true))?;
        if let Some(mut seen) = seen {
            seen.sort();
            if seen != tracked {
                return Err(Broken {
                    reason: "the servers that hold sessions changed".to_owned(),
                    was_up: true,
                });
            }
        }
    }
}

fn addresses(servers: &[ConnectionInfo]) -> Vec<String> {
    let mut addresses: Vec<_> = servers.iter().map(|s| s.addr().to_string()).collect();
    addresses.sort();
    addresses
}

/// One server's tracking connection, whether it is still open, and the watch on its socket.
struct Tracking {
    connection: MultiplexedConnection,
    alive: Arc<AtomicBool>,
    watch: Arc<Watch>,
}

impl Tracking {
    /// A RESP3 connection to `server` whose invalidations of keys under `prefix` go to
    /// `cache`, and whose closing puts the link of `generation` down.
    async fn connect(
        cache: &Weak<NearCache>,
        server: &ConnectionInfo,
        prefix: &str,
        generation: u64,
    ) -> RedisResult<Self> {
        let settings = server
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let ConnectionAddr::Tcp(host, port) = server.addr() else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "the near cache tracks over plain TCP only",
            )));
        };
        let stream = tokio::time::timeout(
            LINK_SILENCE,
            tokio::net::TcpStream::connect((host.as_str(), *port)),
        )
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        stream.set_nodelay(true)?;
        let (stream, watch) = Watched::new(stream.into_std()?)?;
        let alive = Arc::new(AtomicBool::new(true));
        let pushes = {
            let cache = cache.clone();
            let alive = Arc::clone(&alive);
            move |push: PushInfo| {
                if let Some(cache) = cache.upgrade() {
                    receive(&cache, push, generation, &alive);
                }
                Ok::<(), ()>(())
            }
        };
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(LINK_SILENCE))
            .set_push_sender(pushes);
        let (mut connection, driver) = tokio::time::timeout(
            LINK_SILENCE,
            MultiplexedConnection::new_with_config(&settings, stream, config),
        )
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        tokio::spawn(driver);
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("BCAST")
            .arg("PREFIX")
            .arg(prefix)
            .exec_async(&mut connection)
            .await?;
        Ok(Self {
            connection,
            alive,
            watch,
        })
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// A heartbeat: a `PING` that names itself, so that `MONITOR` tells it apart.
    async fn beat(&mut self) -> RedisResult<()> {
        redis::cmd("PING")
            .arg("near-cache")
            .exec_async(&mut self.connection)
            .await
    }
}

/// Applies one push of a tracking connection of the link of `generation` to `cache`.
fn receive(cache: &NearCache, push: PushInfo, generation: u64, alive: &AtomicBool) {
    match push.kind {
        PushKind::Invalidate => match push.data.first() {
            Some(Value::Array(keys)) => {
                cache.invalidated(keys.len());
                cache.forget(keys.iter().filter_map(|key| match key {
                    Value::BulkString(key) => Some(key.as_slice()),
                    _ => None,
                }));
            }
            // A flush: every key is gone.
            _ => cache.forget_all(),
        },
        PushKind::Disconnection => {
            alive.store(false, Ordering::Release);
            cache.link_down(generation);
        }
        _ => {}
    }
}

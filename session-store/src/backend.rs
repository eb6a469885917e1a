//! How the store talks to Redis: each request (one command or one pipeline: one round trip) on
//! a pooled connection, bounded by the command timeout; scripts sent by hash; every outcome
//! recorded, so the pool knows which connections to trust; and each whole store operation
//! bounded by a deadline.

pub(crate) mod batch;
pub(crate) mod connection;
pub(crate) mod pool;
pub(crate) mod sentinel;
pub(crate) mod version;

use std::{
    future::Future,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use deadpool::managed::{Object, Timeouts};
use redis::{
    Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult, ServerErrorKind, ToRedisArgs, Value,
};

use crate::{
    backend::batch::Batch,
    backend::connection::{CommandFate, Remembered, SharedConnection},
    backend::pool::{Manager, Pool},
    config::{Config, ReplicaAcks},
    error::StoreError,
    session::scripts::LuaScript,
};

/// The pool, the timeouts that bound every use of it, and how many replicas a write waits for.
#[derive(Debug)]
pub(crate) struct Backend {
    pool: Pool,
    /// The connection the last checkout handed out, used again with no checkout while the
    /// pool would hand it out as it is (see [`Backend::connection`]).
    last: Mutex<Option<Remembered>>,
    pool_timeouts: Timeouts,
    command_timeout: Duration,
    deadline: Duration,
    replica_acks: Option<ReplicaAcks>,
}

impl Backend {
    pub(crate) fn new(pool: Pool, config: &Config) -> Self {
        Self {
            pool,
            last: Mutex::new(None),
            pool_timeouts: config.pool_timeouts,
            command_timeout: config.command_timeout,
            deadline: config.deadline(),
            replica_acks: config.replica_acks,
        }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs `operation` (any number of requests) within the deadline: past it, the operation
    /// fails with [`StoreError::Deadline`], and a command it cut off makes the pool distrust
    /// its connections.
    pub(crate) async fn within_deadline<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.deadline, operation)
            .await
            .unwrap_or(Err(StoreError::Deadline(self.deadline)))
    }

    /// Sends `request` on a pooled connection: one round trip.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        request: &impl Request,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection().await?;
        self.send(&mut connection, request).await
    }

    /// Sends independent single-key `commands` on a pooled connection, together (see
    /// [`SharedConnection::each`]): one round trip. A key that holds something other than its
    /// command expects (`WRONGTYPE`) answers nil, like a key that holds nothing; any other
    /// failure fails them all.
    pub(crate) async fn query_each(&self, commands: &[Cmd]) -> Result<Vec<Value>, StoreError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection().await?;
        self.send(&mut connection, &Each(commands)).await
    }

    /// Sends the writes of `pipe` on a pooled connection, one round trip, and when writes wait
    /// for replicas, `WAIT` for them in the same round trip: the write counts only once enough
    /// replicas have it, and fails as unavailable ([`StoreError::NotReplicated`]) otherwise
    /// (the primary has it all the same).
    pub(crate) async fn write<T: FromRedisValue>(&self, pipe: Batch) -> Result<T, StoreError> {
        let (_held, mut connection) = self.write_connection().await?;
        self.write_on(&mut connection, pipe, true).await
    }

    /// Runs `script` on `key` with the arguments `args` appends, as a [write](Self::write):
    /// `EVALSHA`, one round trip.
    ///
    /// When Redis lacks the script (a new, restarted or newly promoted server answers
    /// `NOSCRIPT`), the same call goes again as `EVAL` of the script's body, which also leaves
    /// the script in that server's cache. Not `redis::Script::invoke_async`: its fallback is
    /// `SCRIPT LOAD` and a second `EVALSHA`, two more round trips, and on a cluster
    /// `SCRIPT LOAD` goes to every node and fails while any one is down; `EVAL` goes only to the
    /// node that owns the key.
    pub(crate) async fn run_script<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        key: &impl ToRedisArgs,
        args: impl Fn(&mut Cmd),
    ) -> Result<T, StoreError> {
        self.script(script, key, args, true).await
    }

    /// Runs `script` like [`run_script`](Self::run_script), but as a read: it never waits
    /// for replicas (the near cache's read, whose only write is the sliding of an expiry).
    pub(crate) async fn run_read_script<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        key: &impl ToRedisArgs,
        args: impl Fn(&mut Cmd),
    ) -> Result<T, StoreError> {
        self.script(script, key, args, false).await
    }

    async fn script<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        key: &impl ToRedisArgs,
        args: impl Fn(&mut Cmd),
        write: bool,
    ) -> Result<T, StoreError> {
        let call = |mut cmd: Cmd| {
            args(&mut cmd);
            let mut pipe = Batch::new();
            pipe.add_command(cmd);
            pipe
        };
        let (_held, mut connection) = if write {
            self.write_connection().await?
        } else {
            (None, self.connection().await?)
        };
        let first = self
            .write_on(&mut connection, call(script.evalsha(key)), write)
            .await;
        let (reply,): (T,) = match first {
            Err(StoreError::Redis(err))
                if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) =>
            {
                self.write_on(&mut connection, call(script.eval(key)), write)
                    .await?
            }
            result => result?,
        };
        Ok(reply)
    }

    /// Sends `pipe` on `connection`; as a `write`, followed by the `WAIT` for replicas when
    /// writes wait for them.
    async fn write_on<T: FromRedisValue>(
        &self,
        connection: &mut SharedConnection,
        mut pipe: Batch,
        write: bool,
    ) -> Result<T, StoreError> {
        let Some(acks) = self.replica_acks.filter(|_| write) else {
            return self.send(connection, &pipe).await;
        };
        pipe.cmd("WAIT")
            .arg(acks.replicas)
            .arg(u64::try_from(acks.timeout.as_millis()).unwrap_or(u64::MAX));
        let mut replies: Vec<Value> = self.send(connection, &pipe).await?;
        let acked: u32 = replies
            .pop()
            .map_or(Ok(0), redis::from_redis_value)
            .map_err(RedisError::from)?;
        if acked < acks.replicas {
            return Err(StoreError::NotReplicated {
                acked,
                wanted: acks.replicas,
            });
        }
        Ok(redis::from_redis_value(Value::Array(replies)).map_err(RedisError::from)?)
    }

    /// A handle on a pooled connection. The connection itself goes back to the pool at once:
    /// other requests share it meanwhile.
    ///
    /// The connection of the last checkout is used again without a checkout (its semaphore,
    /// queue, recycling and timer: about 3% of the instance's CPU per write) while the pool
    /// would hand it out as it is (it is still in the pool, answered within the trust window,
    /// nothing failed since, behind Sentinel it is still the primary's) and nobody holds or
    /// waits for a pooled connection (a write waiting for replicas holds its own, so may the
    /// application): otherwise requests go through the pool as before.
    async fn connection(&self) -> Result<SharedConnection, StoreError> {
        if let Some(connection) = self.reusable() {
            return Ok(connection);
        }
        // Forgotten before the checkout: should it fail, nothing stale is kept for later.
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let pooled = self.pool.timeout_get(&self.pool_timeouts).await?;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(pooled.remember());
        Ok(pooled.share())
    }

    /// The last checkout's connection, if the pool would hand it out as it is and nobody
    /// holds, waits for or is creating a pooled connection.
    fn reusable(&self) -> Option<SharedConnection> {
        let status = self.pool.status();
        if status.waiting > 0 || status.available < status.size || self.pool.is_closed() {
            return None;
        }
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.as_ref()
            .filter(|connection| self.pool.manager().trusts(connection))
            .map(Remembered::share)
    }

    /// A handle on a pooled connection for a write, and, when writes wait for replicas, the
    /// connection itself, held until the write is done: `WAIT` blocks its connection until
    /// the replicas answer, and no other request may queue behind it (while a shard has no
    /// replica, every `WAIT` takes its whole timeout).
    async fn write_connection(
        &self,
    ) -> Result<(Option<Object<Manager>>, SharedConnection), StoreError> {
        if self.replica_acks.is_none() {
            return Ok((None, self.connection().await?));
        }
        let held = self.pool.timeout_get(&self.pool_timeouts).await?;
        let connection = held.share();
        Ok((Some(held), connection))
    }

    /// One request on `connection`, bounded by the command timeout; the connection learns how
    /// it went.
    async fn send<T: FromRedisValue>(
        &self,
        connection: &mut SharedConnection,
        request: &impl Request,
    ) -> Result<T, StoreError> {
        crate::telemetry::instruments::round_trip();
        let in_flight = connection.in_flight();
        let mut result = tokio::time::timeout(self.command_timeout, request.send(connection)).await;
        if let Ok(Err(err)) = &result
            && first_failure(err.clone()).kind() == ErrorKind::Server(ServerErrorKind::Ask)
            && let Some(again) = request.after_ask(connection)
        {
            result = tokio::time::timeout(self.command_timeout, again).await;
        }
        in_flight.settle();
        match result {
            Ok(Ok(value)) => {
                connection.record(CommandFate::Answered);
                Ok(value)
            }
            Ok(Err(err)) => {
                let err = first_failure(err);
                connection.record(CommandFate::Failed(&err));
                Err(err.into())
            }
            Err(_) => {
                connection.record(CommandFate::TimedOut);
                Err(StoreError::CommandTimeout(self.command_timeout))
            }
        }
    }
}

/// The error of the first failed command of a pipeline, or `err` itself. redis-rs reports a
/// pipeline's failed commands together, under a kind of its own; what the store must tell apart
/// (Redis read-only after a failover, loading, out of memory) is in the command's own error.
fn first_failure(err: RedisError) -> RedisError {
    if err.kind() != ErrorKind::Extension {
        return err;
    }
    match err.clone().into_server_errors().as_deref() {
        Some([(_, first), ..]) => first.clone().into(),
        _ => err,
    }
}

/// What one round trip to Redis carries: a command or a batch.
pub(crate) trait Request {
    fn send<T: FromRedisValue>(
        &self,
        connection: &mut SharedConnection,
    ) -> impl Future<Output = RedisResult<T>>;

    /// The same request again, after its key was found mid-migration (`ASK`), when it must go
    /// otherwise than redis-rs sends it: a batch goes one command at a time (see
    /// [`batch`](crate::backend::batch)). `None` when redis-rs followed the `ASK` already.
    fn after_ask<T: FromRedisValue>(
        &self,
        connection: &mut SharedConnection,
    ) -> Option<impl Future<Output = RedisResult<T>>>;
}

impl Request for Cmd {
    fn send<T: FromRedisValue>(
        &self,
        connection: &mut SharedConnection,
    ) -> impl Future<Output = RedisResult<T>> {
        self.query_async(connection)
    }

    fn after_ask<T: FromRedisValue>(
        &self,
        _: &mut SharedConnection,
    ) -> Option<impl Future<Output = RedisResult<T>>> {
        None::<std::future::Ready<RedisResult<T>>>
    }
}

/// Independent single-key commands, sent together.
struct Each<'a>(&'a [Cmd]);

impl Request for Each<'_> {
    async fn send<T: FromRedisValue>(&self, connection: &mut SharedConnection) -> RedisResult<T> {
        let replies = connection
            .each(self.0)
            .await?
            .into_iter()
            .map(|reply| match reply {
                Err(err) if err.code() == Some("WRONGTYPE") => Ok(Value::Nil),
                reply => reply,
            })
            .collect::<RedisResult<Vec<Value>>>()?;
        Ok(redis::from_redis_value(Value::Array(replies))?)
    }

    fn after_ask<T: FromRedisValue>(
        &self,
        _: &mut SharedConnection,
    ) -> Option<impl Future<Output = RedisResult<T>>> {
        // Each command went on its own, and redis-rs followed its `ASK`.
        None::<std::future::Ready<RedisResult<T>>>
    }
}

impl Request for Batch {
    fn send<T: FromRedisValue>(
        &self,
        connection: &mut SharedConnection,
    ) -> impl Future<Output = RedisResult<T>> {
        Batch::send(self, connection)
    }

    fn after_ask<T: FromRedisValue>(
        &self,
        connection: &mut SharedConnection,
    ) -> Option<impl Future<Output = RedisResult<T>>> {
        // Rare: on the heap, out of the future of every request.
        Some(Box::pin(self.one_by_one(connection)))
    }
}

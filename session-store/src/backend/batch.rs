//! A batch of commands on one key: one pipeline, one round trip; and, while the key's slot is
//! moving between cluster nodes, the same commands one at a time.
//!
//! While a slot migrates, its old primary answers `ASK` for a key that has already moved, and
//! the new one serves that key only to a command that follows an `ASKING`. redis-rs follows an
//! `ASK` for a single command, but sends one `ASKING` before a whole pipeline, so the rest of
//! the pipeline bounces between the two nodes until its retries run out (and a transaction is
//! refused outright). A batch that meets an `ASK` is therefore sent again command by command:
//! more round trips, only for keys caught in a migration.

use std::future::Future;

use redis::{Cmd, FromRedisValue, Pipeline, RedisResult, ToRedisArgs, Value, aio::ConnectionLike};

/// Commands on one key, sent together, and which of their replies the caller wants.
pub(crate) struct Batch {
    pipe: Pipeline,
    /// How many commands it holds.
    len: u32,
    /// Bit `i` set: the reply of command `i` is not wanted.
    ignored: u32,
}

impl Batch {
    pub(crate) fn new() -> Self {
        Self {
            pipe: redis::pipe(),
            len: 0,
            ignored: 0,
        }
    }

    /// Starts the next command.
    pub(crate) fn cmd(&mut self, name: &str) -> &mut Self {
        self.pipe.cmd(name);
        self.len += 1;
        self
    }

    /// Adds a whole command.
    pub(crate) fn add_command(&mut self, cmd: Cmd) -> &mut Self {
        self.pipe.add_command(cmd);
        self.len += 1;
        self
    }

    /// An argument of the last command.
    pub(crate) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.pipe.arg(arg);
        self
    }

    /// The last command's reply is not wanted.
    pub(crate) fn ignore(&mut self) -> &mut Self {
        self.pipe.ignore();
        self.ignored |= 1 << (self.len - 1);
        self
    }

    /// All commands in one pipeline: one round trip.
    pub(crate) fn send<T: FromRedisValue, C: ConnectionLike + Send>(
        &self,
        connection: &mut C,
    ) -> impl Future<Output = RedisResult<T>> {
        self.pipe.query_async(connection)
    }

    /// The commands one after the other, each its own request that redis-rs can redirect, and
    /// the wanted replies as the pipeline would have given them.
    pub(crate) async fn one_by_one<T: FromRedisValue, C: ConnectionLike + Send>(
        &self,
        connection: &mut C,
    ) -> RedisResult<T> {
        let mut replies = Vec::new();
        for (index, cmd) in self.pipe.cmd_iter().enumerate() {
            let reply: Value = cmd.query_async(connection).await?;
            if self.ignored & (1 << index) == 0 {
                replies.push(reply);
            }
        }
        Ok(redis::from_redis_value(Value::Array(replies))?)
    }
}

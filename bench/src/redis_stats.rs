//! Reading what a Redis server did: commands by name, and memory.

use std::collections::HashMap;

/// Commands that only ever run inside session-store's Lua scripts, never from a client. The
/// anchor sends none of them (it uses GET, SET, EXPIRE and DEL).
const SCRIPT_ONLY: [&str; 8] = [
    "time", "hget", "hset", "pexpire", "hgetall", "exists", "hkeys", "hdel",
];

/// Commands the benchmark itself sends to read statistics.
const OURS: [&str; 4] = ["info", "config|resetstat", "flushall", "memory|purge"];

/// Calls per command name since the last `CONFIG RESETSTAT`.
#[derive(Debug, Default)]
pub struct CommandStats(HashMap<String, u64>);

impl CommandStats {
    /// Reads `INFO commandstats`.
    ///
    /// # Errors
    /// When Redis does not answer.
    pub fn read(redis: &mut redis::Connection) -> redis::RedisResult<Self> {
        let info: String = redis::cmd("INFO").arg("commandstats").query(redis)?;
        let calls = info
            .lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect();
        Ok(Self(calls))
    }

    /// Commands the application's clients sent (not those its scripts ran, nor ours).
    pub fn client_commands(&self) -> u64 {
        self.0
            .iter()
            .filter(|(name, _)| {
                !SCRIPT_ONLY.contains(&name.as_str()) && !OURS.contains(&name.as_str())
            })
            .map(|(_, calls)| calls)
            .sum()
    }

    /// Round trips: client commands, counting the pool's pipelined `UNWATCH` + `PING` as one.
    pub fn round_trips(&self) -> u64 {
        self.client_commands() - self.0.get("unwatch").copied().unwrap_or(0)
    }
}

/// Resets the command statistics.
///
/// # Errors
/// When Redis does not answer.
pub fn reset(redis: &mut redis::Connection) -> redis::RedisResult<()> {
    redis::cmd("CONFIG").arg("RESETSTAT").query(redis)
}

/// `used_memory` from `INFO memory`, in bytes.
///
/// # Errors
/// When Redis does not answer.
pub fn used_memory(redis: &mut redis::Connection) -> redis::RedisResult<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query(redis)?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:")?.trim().parse().ok())
        .unwrap_or(0))
}

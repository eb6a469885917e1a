//! Reading what a Redis server did: commands by name, CPU time, and memory.

use std::collections::HashMap;

/// Commands that never start a round trip of session-store's: those only its Lua scripts run
/// (the anchor sends none of them: it uses GET, SET, EXPIRE and DEL), and `HMGET`, which only
/// travels in the write pipeline beside a `PEXPIRE`. Besides these, every script call that
/// writes runs one `PEXPIRE`, which a load also sends from the client. (This reconstruction
/// is the benchmark's estimate; `tests/tests/round_trips.rs` counts round trips on the wire.)
const NOT_ROUND_TRIPS: [&str; 6] = ["hget", "hmget", "hset", "exists", "hkeys", "hdel"];

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
        let info: redis::InfoDict = redis::cmd("INFO").arg("commandstats").query(redis)?;
        let calls = info
            .iter()
            .filter_map(|(field, stats)| {
                let name = field.strip_prefix("cmdstat_")?;
                let stats: String = redis::from_redis_value_ref(stats).ok()?;
                let calls = stats
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

    /// Adds `other`'s calls to these: the statistics of a cluster are the sums of its
    /// nodes'.
    pub fn add(&mut self, other: Self) {
        for (name, calls) in other.0 {
            *self.0.entry(name).or_default() += calls;
        }
    }

    fn calls(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Commands Redis ran for the application: those its clients sent and those its scripts
    /// ran (not ours). The measure of Redis's work.
    pub fn executed(&self) -> u64 {
        self.0
            .iter()
            .filter(|(name, _)| !OURS.contains(&name.as_str()))
            .map(|(_, calls)| calls)
            .sum()
    }

    /// Commands the application's clients sent (not those its scripts ran, nor ours), counting
    /// session-store's `HGET` + `HSET` + `PEXPIRE` write pipeline as its `PEXPIRE` alone.
    fn client_commands(&self) -> u64 {
        let all: u64 = self
            .0
            .iter()
            .filter(|(name, _)| {
                !NOT_ROUND_TRIPS.contains(&name.as_str()) && !OURS.contains(&name.as_str())
            })
            .map(|(_, calls)| calls)
            .sum();
        all - self.calls("pexpire").min(self.calls("evalsha"))
    }

    /// Round trips: client commands, counting each pipelined pair as one: the pool's
    /// `UNWATCH` + `PING`, and session-store's `HGETALL` + `PEXPIRE`.
    pub fn round_trips(&self) -> u64 {
        self.client_commands() - self.calls("unwatch") - self.calls("hgetall")
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
    let info: redis::InfoDict = redis::cmd("INFO").arg("memory").query(redis)?;
    Ok(info.get("used_memory").unwrap_or(0))
}

/// Seconds of CPU the server used since it started, user and system, all its threads:
/// `used_cpu_user` + `used_cpu_sys` from `INFO cpu`.
///
/// # Errors
/// When Redis does not answer.
pub fn cpu_seconds(redis: &mut redis::Connection) -> redis::RedisResult<f64> {
    let info: redis::InfoDict = redis::cmd("INFO").arg("cpu").query(redis)?;
    let seconds = |field: &str| info.get::<f64>(field).unwrap_or(0.0);
    Ok(seconds("used_cpu_user") + seconds("used_cpu_sys"))
}

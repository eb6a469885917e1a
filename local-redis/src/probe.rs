//! Asking a local Redis process about itself, over a short-lived connection per question.

use std::{collections::HashMap, time::Duration};

use redis::{Cmd, FromRedisValue, RedisResult};

/// How long a question may take: these are loopback processes, and a check that hangs would
/// hold up every wait built on it.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Sends `command` to the process on the loopback `port` and returns its answer.
pub(crate) fn query<T: FromRedisValue>(port: u16, command: &Cmd) -> RedisResult<T> {
    let client = redis::Client::open(("127.0.0.1", port))?;
    let mut connection = client.get_connection_with_timeout(TIMEOUT)?;
    connection.set_read_timeout(Some(TIMEOUT))?;
    connection.set_write_timeout(Some(TIMEOUT))?;
    command.query(&mut connection)
}

/// The `name:value` lines of `INFO` or `CLUSTER INFO`.
#[derive(Debug)]
pub(crate) struct Fields(HashMap<String, String>);

impl Fields {
    fn parse(text: &str) -> Self {
        let fields = text
            .lines()
            .filter_map(|line| line.trim_end().split_once(':'))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Self(fields)
    }

    /// The value of the field `name`, when there is one.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether the field `name` has the value `value`.
    pub(crate) fn is(&self, name: &str, value: &str) -> bool {
        self.get(name) == Some(value)
    }
}

/// `INFO` of the given sections (`"server persistence"`, `"replication"`).
pub(crate) fn info(port: u16, sections: &str) -> RedisResult<Fields> {
    let mut command = redis::cmd("INFO");
    for section in sections.split_whitespace() {
        command.arg(section);
    }
    query::<String>(port, &command).map(|text| Fields::parse(&text))
}

/// `CLUSTER INFO`.
pub(crate) fn cluster_info(port: u16) -> RedisResult<Fields> {
    query::<String>(port, redis::cmd("CLUSTER").arg("INFO")).map(|text| Fields::parse(&text))
}

/// The answer to `SENTINEL MASTER name`: the primary as that sentinel sees it.
pub(crate) fn sentinel_master(port: u16, name: &str) -> RedisResult<Fields> {
    let pairs: HashMap<String, String> =
        query(port, redis::cmd("SENTINEL").arg("MASTER").arg(name))?;
    Ok(Fields(pairs))
}

/// Whether the process on `port` answers, is the process `pid` (another server that took the
/// port in the meantime must not pass for ours) and has loaded its data.
pub(crate) fn serves_as(port: u16, pid: u32) -> bool {
    // Sentinels have no persistence section, and nothing to load.
    info(port, "server persistence")
        .is_ok_and(|fields| fields.is("process_id", &pid.to_string()) && !fields.is("loading", "1"))
}

//! The oldest Redis the store works with, and the check of a pool's first connection against it.

use std::time::Duration;

use redis::Value;

use crate::backend::connection::Link;

/// The oldest Redis the store works with: the users' index reads with `ZRANGE ... BYSCORE REV`
/// and `location` asks `CLIENT INFO`, both new in 6.2.
pub const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// How long the version check of a manager's first connection may take before it is given up.
const VERSION_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Asks the server behind `link` for its version (`INFO server`; on a cluster, every primary's)
/// and warns when one is older than [`MIN_REDIS_VERSION`]. Once per manager, on its first
/// connection. Advisory: a server that does not answer in time, or a user whose ACL lacks
/// `INFO`, only goes unchecked.
pub(crate) async fn check(link: &mut Link) {
    let mut info = redis::cmd("INFO");
    info.arg("server");
    let versions = match tokio::time::timeout(VERSION_CHECK_TIMEOUT, info.query_async(link)).await {
        Ok(Ok(info)) => redis_versions(&info),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "the Redis version could not be checked");
            return;
        }
        Err(_) => {
            tracing::debug!("the Redis version could not be checked in time");
            return;
        }
    };
    for version in versions {
        match parse_version(&version) {
            Some(found) if found < MIN_REDIS_VERSION => tracing::warn!(
                redis_version = %version,
                "Redis {version} is older than {}.{}, the oldest the session store supports: \
                 listing a user's sessions and `location` fail on it",
                MIN_REDIS_VERSION.0,
                MIN_REDIS_VERSION.1,
            ),
            _ => tracing::debug!(redis_version = %version, "Redis version checked"),
        }
    }
}

/// The `redis_version` fields of an `INFO` answer: one, or one per node of a cluster.
fn redis_versions(info: &Value) -> Vec<String> {
    match info {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|line| line.strip_prefix("redis_version:"))
            .map(|version| version.trim().to_owned())
            .collect(),
        Value::VerbatimString { text, .. } => {
            redis_versions(&Value::BulkString(text.clone().into()))
        }
        Value::Map(nodes) => nodes
            .iter()
            .flat_map(|(_, info)| redis_versions(info))
            .collect(),
        Value::Array(nodes) => nodes.iter().flat_map(redis_versions).collect(),
        _ => Vec::new(),
    }
}

/// Major and minor of a version such as `7.0.15`.
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.').map(str::parse::<u32>);
    Some((parts.next()?.ok()?, parts.next()?.ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_one_servers_info_or_each_nodes() {
        let info = |version: &str| {
            Value::BulkString(
                format!("# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n").into(),
            )
        };
        assert_eq!(redis_versions(&info("7.0.15")), ["7.0.15"]);
        let nodes = Value::Map(vec![
            (Value::SimpleString("a:1".into()), info("6.0.9")),
            (Value::SimpleString("b:2".into()), info("7.2.4")),
        ]);
        assert_eq!(redis_versions(&nodes), ["6.0.9", "7.2.4"]);
        assert_eq!(parse_version("6.0.9"), Some((6, 0)));
        assert!(parse_version("6.0.9") < Some(MIN_REDIS_VERSION));
        assert!(parse_version("6.2.0") >= Some(MIN_REDIS_VERSION));
        assert!(parse_version("10.0.0") >= Some(MIN_REDIS_VERSION));
        assert_eq!(parse_version("unstable"), None);
    }
}

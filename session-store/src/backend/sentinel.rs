//! Connections through Redis Sentinel: to the primary the sentinels name, and a watch on their
//! `+switch-master` announcements, so that no request goes on writing to a demoted primary.
//!
//! A primary that loses a failover while it still runs (a network partition, a manual
//! `SENTINEL FAILOVER`) goes on accepting writes until the sentinels reconfigure it as a
//! replica, and then drops them as it resyncs from the new primary. So the manager remembers
//! which primary the sentinels announced last; a pooled connection to any other server is
//! replaced at its next checkout, and every connection proves its role (`ROLE`) before its
//! first use after a failure.

use std::{
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt as _;
use redis::{
    AsyncConnectionConfig, IntoConnectionInfo, RedisResult, Value,
    aio::MultiplexedConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};

/// How long the watch waits before it connects to a sentinel again after losing one.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// The sentinels, the primary they named last, and the watch that keeps it current.
pub(crate) struct Sentinels {
    client: Arc<tokio::sync::Mutex<SentinelClient>>,
    master_name: String,
    /// `host:port` of the primary the sentinels named last.
    primary: Arc<Mutex<Option<String>>>,
    /// How many switches the watch has heard of.
    switches: Arc<AtomicU64>,
    watching: OnceLock<()>,
}

impl std::fmt::Debug for Sentinels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentinels")
            .field("master_name", &self.master_name)
            .field("primary", &self.primary)
            .finish_non_exhaustive()
    }
}

impl Sentinels {
    pub(crate) fn new<T: IntoConnectionInfo>(
        sentinels: impl IntoIterator<Item = T>,
        master_name: &str,
        primary: SentinelNodeConnectionInfo,
    ) -> RedisResult<Self> {
        let client = SentinelClient::build(
            sentinels.into_iter().collect(),
            master_name,
            Some(primary),
            SentinelServerType::Master,
        )?;
        Ok(Self::from_client(client, master_name))
    }

    pub(crate) fn from_client(client: SentinelClient, master_name: &str) -> Self {
        Self {
            client: Arc::new(tokio::sync::Mutex::new(client)),
            master_name: master_name.to_owned(),
            primary: Arc::default(),
            switches: Arc::default(),
            watching: OnceLock::new(),
        }
    }

    /// A connection to the primary the sentinels name now (redis-rs checks its `ROLE`), and
    /// its address. Starts the watch on the first call.
    ///
    /// An answer the sentinels gave before a switch the watch heard of meanwhile is stale: the
    /// sentinels are asked again.
    pub(crate) async fn connect(
        &self,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<(MultiplexedConnection, String)> {
        self.watch();
        loop {
            let switches = self.switches.load(Ordering::Acquire);
            let client = self.client.lock().await.async_get_client().await?;
            let address = client.get_connection_info().addr().to_string();
            let connection = client
                .get_multiplexed_async_connection_with_config(config)
                .await?;
            let mut primary = self.primary.lock().unwrap_or_else(PoisonError::into_inner);
            if self.switches.load(Ordering::Acquire) == switches {
                *primary = Some(address.clone());
                return Ok((connection, address));
            }
        }
    }

    /// A client of the primary the sentinels name now.
    pub(crate) async fn primary_client(&self) -> RedisResult<redis::Client> {
        self.client.lock().await.async_get_client().await
    }

    /// How many switches of primary the watch has heard of.
    pub(crate) fn switches(&self) -> u64 {
        self.switches.load(Ordering::Acquire)
    }

    /// The address of the primary the sentinels named last, once known.
    pub(crate) fn primary(&self) -> Option<String> {
        self.primary
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the sentinels still name the server at `address` as primary, as far as the
    /// watch has heard.
    pub(crate) fn is_current(&self, address: &str) -> bool {
        self.primary
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_deref()
            .is_none_or(|primary| primary == address)
    }

    /// Starts, once, a task that listens to the sentinels' `+switch-master` announcements.
    fn watch(&self) {
        self.watching.get_or_init(|| {
            tokio::spawn(watch(
                Arc::clone(&self.client),
                self.master_name.clone(),
                Arc::clone(&self.primary),
                Arc::clone(&self.switches),
            ));
        });
    }
}

/// Listens to one responsive sentinel after another for `+switch-master` and keeps `primary`
/// current, for as long as the runtime runs.
async fn watch(
    client: Arc<tokio::sync::Mutex<SentinelClient>>,
    master_name: String,
    primary: Arc<Mutex<Option<String>>>,
    switches: Arc<AtomicU64>,
) {
    loop {
        let sentinel = client.lock().await.async_get_sentinel_client().await;
        if let Ok(sentinel) = sentinel
            && let Ok(mut pubsub) = sentinel.get_async_pubsub().await
            && pubsub.subscribe("+switch-master").await.is_ok()
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                if let Some(new) = switched_to(&payload, &master_name) {
                    tracing::warn!(primary = %new, "Sentinel failover: a new primary");
                    let mut primary = primary.lock().unwrap_or_else(PoisonError::into_inner);
                    switches.fetch_add(1, Ordering::AcqRel);
                    *primary = Some(new);
                }
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// The new primary's `host:port` in a `+switch-master` message
/// (`<master name> <old ip> <old port> <new ip> <new port>`) about `master_name`.
fn switched_to(payload: &str, master_name: &str) -> Option<String> {
    let fields: Vec<&str> = payload.split_whitespace().collect();
    match fields.as_slice() {
        [name, _, _, ip, port] if *name == master_name => Some(format!("{ip}:{port}")),
        _ => None,
    }
}

/// Whether a `ROLE` reply says the server is a primary.
/// The replicas (`host`, `port`) a primary's `ROLE` reply lists.
pub(crate) fn replicas(role: &Value) -> Vec<(String, u16)> {
    let Value::Array(parts) = role else {
        return Vec::new();
    };
    let Some(Value::Array(replicas)) = parts.get(2) else {
        return Vec::new();
    };
    replicas
        .iter()
        .filter_map(|replica| {
            let Value::Array(fields) = replica else {
                return None;
            };
            let host: String = redis::from_redis_value_ref(fields.first()?).ok()?;
            let port: String = redis::from_redis_value_ref(fields.get(1)?).ok()?;
            Some((host, port.parse().ok()?))
        })
        .collect()
}

pub(crate) fn is_primary(role: &Value) -> bool {
    match role {
        Value::Array(fields) => fields
            .first()
            .and_then(|role| redis::from_redis_value_ref::<String>(role).ok())
            .is_some_and(|role| role == "master"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_names_the_new_primary_of_its_master_only() {
        let payload = "sessions 127.0.0.1 7000 127.0.0.1 7001";
        assert_eq!(
            switched_to(payload, "sessions").as_deref(),
            Some("127.0.0.1:7001")
        );
        assert_eq!(switched_to(payload, "other"), None);
        assert_eq!(switched_to("garbled", "sessions"), None);
    }
}

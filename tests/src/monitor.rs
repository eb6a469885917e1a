//! Watching the commands a Redis server receives, through `MONITOR`.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt as _;
use tokio::task::JoinHandle;

/// One command as `MONITOR` reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The command's name, lowercase (`"evalsha"`).
    pub name: String,
    /// Whether a Lua script issued it (as opposed to a client, over the network).
    pub from_script: bool,
    /// The line as Redis printed it.
    pub line: String,
}

/// Records every command the servers it watches receive from the moment it is started.
pub struct Monitor {
    nodes: Vec<NodeMonitor>,
}

/// `MONITOR` on one server.
struct NodeMonitor {
    /// The connection that sends the markers, opened before monitoring began so that its
    /// set-up is not among the commands seen.
    marker_connection: redis::aio::MultiplexedConnection,
    lines: Arc<Mutex<Vec<String>>>,
    reader: JoinHandle<()>,
}

static MARKERS: AtomicU64 = AtomicU64::new(0);

impl Monitor {
    /// Attaches to the server `client` connects to; returns once Redis confirmed that it is
    /// monitoring.
    pub async fn start(client: &redis::Client) -> Self {
        Self::start_all(std::slice::from_ref(client)).await
    }

    /// Attaches to every server of `clients` (the nodes of a cluster, say).
    pub async fn start_all(clients: &[redis::Client]) -> Self {
        let mut nodes = Vec::new();
        for client in clients {
            nodes.push(NodeMonitor::start(client).await);
        }
        Self { nodes }
    }

    /// The commands received since the last call (or since the start), once Redis has
    /// reported every one of them: server by server, each in the order it received them. The
    /// near cache's heartbeats (`PING near-cache` on its tracking connections) are left out:
    /// they are no request's.
    pub async fn take(&self) -> Vec<Command> {
        let mut commands = Vec::new();
        for node in &self.nodes {
            commands.extend(node.take().await);
        }
        commands
    }
}

impl NodeMonitor {
    async fn start(client: &redis::Client) -> Self {
        let marker_connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis answers");
        let mut messages = client
            .get_async_monitor()
            .await
            .expect("MONITOR accepted")
            .into_on_message::<String>();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = tokio::spawn(async move {
            while let Some(line) = messages.next().await {
                sink.lock().expect("monitor lock").push(line);
            }
        });
        Self {
            marker_connection,
            lines,
            reader,
        }
    }

    async fn take(&self) -> Vec<Command> {
        let marker = format!("monitor-marker-{}", MARKERS.fetch_add(1, Ordering::Relaxed));
        // A command sent after everything we want to see: once MONITOR reports it, it has
        // reported all that came before.
        let _: String = redis::cmd("ECHO")
            .arg(&marker)
            .query_async(&mut self.marker_connection.clone())
            .await
            .expect("ECHO");
        let wait = async {
            loop {
                if let Some(taken) = self.take_through(&marker) {
                    return taken;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("MONITOR never reported {marker}"))
    }

    /// The commands before the line holding `marker`, if it has come, taken with it out of the
    /// record.
    fn take_through(&self, marker: &str) -> Option<Vec<Command>> {
        let mut lines = self.lines.lock().expect("monitor lock");
        let end = lines.iter().position(|line| line.contains(marker))?;
        let taken: Vec<String> = lines.drain(..=end).collect();
        Some(
            taken[..end]
                .iter()
                .filter(|line| !line.ends_with(NEAR_CACHE_HEARTBEAT))
                .map(|line| parse(line))
                .collect(),
        )
    }
}

impl Drop for NodeMonitor {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// How `MONITOR` shows a near cache's heartbeat: the end of its line.
const NEAR_CACHE_HEARTBEAT: &str = "\"PING\" \"near-cache\"";

/// Parses `1700000000.000000 [0 127.0.0.1:5000] "evalsha" "..."` (or `[0 lua]`).
fn parse(line: &str) -> Command {
    let from_script = line.contains(" lua] ");
    let name = line
        .split('"')
        .nth(1)
        .unwrap_or_default()
        .to_ascii_lowercase();
    Command {
        name,
        from_script,
        line: line.to_owned(),
    }
}

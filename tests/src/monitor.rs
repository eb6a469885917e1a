//! Watching the commands a Redis server receives, through `MONITOR`.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpStream,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::RedisServer;

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

/// Records every command a server receives from the moment it is started.
pub struct Monitor {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

static MARKERS: AtomicU64 = AtomicU64::new(0);

impl Monitor {
    /// Attaches to `server`; returns once Redis confirmed that it is monitoring.
    pub fn start(server: &RedisServer) -> Self {
        let mut stream =
            TcpStream::connect(("127.0.0.1", server.port())).expect("the test's Redis answers");
        stream.write_all(b"MONITOR\r\n").expect("MONITOR sent");
        let mut reader = BufReader::new(stream);
        let mut ok = String::new();
        reader.read_line(&mut ok).expect("MONITOR answered");
        assert_eq!(ok, "+OK\r\n", "MONITOR refused");

        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { return };
                sink.lock().expect("monitor lock").push(line);
            }
        });
        Self {
            port: server.port(),
            lines,
        }
    }

    /// The commands received since the last call (or since the start), once Redis has
    /// reported every one of them.
    pub fn take(&self) -> Vec<Command> {
        let marker = format!("monitor-marker-{}", MARKERS.fetch_add(1, Ordering::Relaxed));
        // A command sent after everything we want to see: once MONITOR reports it, it has
        // reported all that came before.
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("Redis answers");
        write!(stream, "ECHO {marker}\r\n").expect("ECHO sent");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut lines = self.lines.lock().expect("monitor lock");
            if let Some(end) = lines.iter().position(|line| line.contains(&marker)) {
                let taken: Vec<String> = lines.drain(..=end).collect();
                return taken[..taken.len() - 1]
                    .iter()
                    .map(|line| parse(line))
                    .collect();
            }
            drop(lines);
            assert!(Instant::now() < deadline, "MONITOR never reported {marker}");
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Parses `+1700000000.000000 [0 127.0.0.1:5000] "evalsha" "..."` (or `[0 lua]`).
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

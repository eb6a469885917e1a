//! One measured round: a fresh server with one store on an emptied Redis, logged-in sessions
//! when the scenario needs them, a warm-up, then the measured load and what it cost every
//! process: requests, Redis commands and round trips, CPU of the server and of each Redis
//! node.

use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    Policy, StoreKind,
    backend::Backend,
    cpu,
    load::{self, LoadResult, Request},
};

/// One load scenario.
#[derive(Debug)]
pub struct Scenario {
    /// What the tables call it.
    pub name: &'static str,
    /// When the store slides the expiry.
    pub policy: Policy,
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The route.
    pub path: &'static str,
    /// Whether requests carry a session cookie.
    pub logged_in: bool,
}

/// Every scenario, in table order.
pub const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "read, expiry slid every request",
        policy: Policy::Every,
        method: "GET",
        path: "/read",
        logged_in: true,
    },
    Scenario {
        name: "read, no refresh",
        policy: Policy::Changes,
        method: "GET",
        path: "/read",
        logged_in: true,
    },
    Scenario {
        name: "write one entry",
        policy: Policy::Changes,
        method: "POST",
        path: "/write",
        logged_in: true,
    },
    Scenario {
        name: "login (new session)",
        policy: Policy::Changes,
        method: "POST",
        path: "/login",
        logged_in: false,
    },
];

/// What every measurement shares: the load settings and the CPUs.
#[derive(Debug, Clone, Copy)]
pub struct Bench {
    /// Measured seconds per round (after one second of warm-up).
    pub duration: Duration,
    /// Concurrent connections of the load generator.
    pub connections: u32,
    /// The server's CPU, when pinned.
    pub server_cpu: Option<usize>,
    /// The CPU of Redis and the load generator, when pinned.
    pub load_cpu: Option<usize>,
}

/// One measured round.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario's name.
    pub scenario: &'static str,
    /// The store measured.
    pub store: StoreKind,
    /// What the load generator saw.
    pub load: LoadResult,
    /// Redis commands run per request, scripts' included.
    pub commands: f64,
    /// Round trips to Redis per request.
    pub round_trips: f64,
    /// CPU microseconds the server spent per request.
    pub server_us: f64,
    /// The share of one CPU the server used.
    pub server_busy: f64,
    /// CPU microseconds each Redis node spent per request, in node order.
    pub redis_us: Vec<f64>,
    /// The share of one CPU all Redis nodes used together.
    pub redis_busy: f64,
    /// The share of one CPU the load generator used.
    pub load_busy: f64,
    /// How busy each CPU was, whoever kept it busy.
    pub cpus_busy: Vec<f64>,
}

impl Bench {
    /// One round of `scenario` on `store` over `redis`, on an emptied Redis and a fresh
    /// server, with `sessions` logged-in sessions taking turns (when the scenario uses one).
    ///
    /// # Errors
    /// When Redis, the server or the load generator fails.
    pub fn measure(
        &self,
        redis: &mut Backend,
        scenario: &Scenario,
        store: StoreKind,
        sessions: usize,
    ) -> anyhow::Result<Row> {
        redis.flush()?;
        let server = Server::start(store, scenario.policy, redis, self.server_cpu)?;
        let cookies = if scenario.logged_in && store != StoreKind::None {
            (0..sessions)
                .map(|_| server.login())
                .collect::<anyhow::Result<_>>()?
        } else {
            Vec::new()
        };
        let request = Request {
            method: scenario.method,
            path: scenario.path,
            cookies,
        };
        let run = |duration| {
            load::run(
                server.port,
                &request,
                duration,
                self.connections,
                self.load_cpu,
            )
        };
        run(Duration::from_secs(1))?;
        redis.reset_stats()?;
        let before = Cpu::read(&server, redis)?;
        let started = Instant::now();
        let load = run(self.duration)?;
        let wall = started.elapsed().as_secs_f64();
        let used = Cpu::read(&server, redis)?.since(&before);
        let stats = redis.command_stats()?;

        let requests = load.requests.max(1) as f64;
        Ok(Row {
            scenario: scenario.name,
            store,
            load,
            commands: stats.executed() as f64 / requests,
            round_trips: stats.round_trips() as f64 / requests,
            server_us: used.server * 1e6 / requests,
            server_busy: used.server / wall,
            redis_us: used.redis.iter().map(|s| s * 1e6 / requests).collect(),
            redis_busy: used.redis.iter().sum::<f64>() / wall,
            load_busy: used.load / wall,
            cpus_busy: used.cpus.iter().map(|s| s / wall).collect(),
        })
    }
}

/// CPU seconds used so far by the server, each Redis node, the load generators that have
/// finished, and each CPU whoever used it.
struct Cpu {
    server: f64,
    redis: Vec<f64>,
    load: f64,
    cpus: Vec<f64>,
}

impl Cpu {
    fn read(server: &Server, redis: &mut Backend) -> anyhow::Result<Self> {
        Ok(Self {
            server: server.cpu_seconds()?,
            redis: redis.cpu_seconds()?,
            load: cpu::children_seconds()?,
            cpus: cpu::busy_seconds()?,
        })
    }

    /// What was used between `before` and this reading.
    fn since(&self, before: &Self) -> Self {
        let minus = |after: &[f64], before: &[f64]| -> Vec<f64> {
            after.iter().zip(before).map(|(a, b)| a - b).collect()
        };
        Self {
            server: self.server - before.server,
            redis: minus(&self.redis, &before.redis),
            load: self.load - before.load,
            cpus: minus(&self.cpus, &before.cpus),
        }
    }
}

/// The median of some figures and their spread.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    /// The middle figure.
    pub median: f64,
    /// The lowest.
    pub min: f64,
    /// The highest.
    pub max: f64,
}

impl Spread {
    /// The median, lowest and highest of `values` (the upper median of an even count).
    ///
    /// # Panics
    /// When `values` is empty.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut values: Vec<f64> = values.into_iter().collect();
        values.sort_by(f64::total_cmp);
        Self {
            median: values[values.len() / 2],
            min: values[0],
            max: values[values.len() - 1],
        }
    }
}

/// One store's rounds of one scenario: the round of median throughput, and the CPU per
/// request over all rounds (each figure's own median and spread).
#[derive(Debug, Clone)]
pub struct Summary {
    /// The round of median throughput.
    pub row: Row,
    /// Server CPU µs per request.
    pub server_us: Spread,
    /// Redis CPU µs per request, all nodes together.
    pub redis_us: Spread,
    /// Requests per second.
    pub rate: Spread,
}

/// Sums up the rounds of one store in one scenario.
///
/// # Panics
/// When `rounds` is empty.
pub fn summarize(rounds: Vec<Row>) -> Summary {
    let server_us = Spread::of(rounds.iter().map(|row| row.server_us));
    let redis_us = Spread::of(rounds.iter().map(|row| row.redis_us.iter().sum()));
    let rate = Spread::of(rounds.iter().map(|row| row.load.rate));
    Summary {
        row: median(rounds),
        server_us,
        redis_us,
        rate,
    }
}

/// The round with the median throughput.
pub fn median(mut rounds: Vec<Row>) -> Row {
    rounds.sort_by(|a, b| a.load.rate.total_cmp(&b.load.rate));
    let middle = rounds.len() / 2;
    rounds.swap_remove(middle)
}

/// A `bench serve` process, killed on drop.
pub struct Server {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl Server {
    /// Starts `bench serve` with `store` over `redis`, on CPU `cpu` when given, and waits
    /// until it listens.
    ///
    /// # Errors
    /// When it does not start or listen within 10 s.
    pub fn start(
        store: StoreKind,
        policy: Policy,
        redis: &Backend,
        cpu: Option<usize>,
    ) -> anyhow::Result<Self> {
        let port = local_redis::free_port()?;
        let exe = std::env::current_exe()?;
        let mut command = load::pinned(cpu, &exe.to_string_lossy());
        command.args(["serve", "--store", store.arg(), "--port", &port.to_string()]);
        for url in redis.urls() {
            command.args(["--redis-url", url]);
        }
        if redis.is_cluster() {
            command.arg("--cluster");
        }
        let policy = if policy == Policy::Every {
            "every"
        } else {
            "changes"
        };
        let child = command
            .args(["--policy", policy])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the benchmark server")?;
        let server = Self { child, port };
        if !local_redis::wait_until_listening(port, Duration::from_secs(10)) {
            bail!("the {} server did not listen within 10 s", store.label());
        }
        Ok(server)
    }

    /// Logs in and returns the session cookie as `name=value`.
    ///
    /// # Errors
    /// When the login fails or sets no cookie.
    pub fn login(&self) -> anyhow::Result<String> {
        let response = ureq::post(&format!("http://127.0.0.1:{}/login", self.port)).send_empty()?;
        let cookie = response
            .headers()
            .get("set-cookie")
            .context("login set no cookie")?
            .to_str()?;
        Ok(cookie.split(';').next().unwrap_or_default().to_owned())
    }

    /// The CPU seconds it used so far (`taskset` execs the server, so its pid is the
    /// server's).
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu::process_seconds(self.child.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! `bench run`: every scenario against every store, on one Redis, in one run, then tables.

use std::{
    collections::HashMap,
    process::{Child, Stdio},
    thread,
    time::Duration,
};

use actix_session::storage::SessionStore;
use actix_web::cookie::time::Duration as CookieDuration;
use anyhow::{Context as _, bail};
use clap::Args;
use futures_util::future::try_join_all;
use local_redis::RedisServer;

use crate::{
    LOGIN_STATE, Policy, StoreKind,
    load::{self, LoadResult, Request},
    redis_stats::{self, CommandStats},
};

/// Settings of a benchmark run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Seconds of measured load per round (after one second of warm-up).
    #[arg(long, default_value_t = 4)]
    pub seconds: u64,
    /// Rounds per scenario and store, interleaved across stores; the median round is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// Sessions created for the memory measurement.
    #[arg(long, default_value_t = 100_000)]
    pub sessions: usize,
    /// Concurrent writers of one session in the lost-update count.
    #[arg(long, default_value_t = 50)]
    pub writers: usize,
}

/// The stores compared, ours first.
const STORES: [StoreKind; 3] = [StoreKind::Ours, StoreKind::ActixCm, StoreKind::ActixPool];

/// One load scenario.
struct Scenario {
    name: &'static str,
    policy: Policy,
    method: &'static str,
    path: &'static str,
    logged_in: bool,
}

const SCENARIOS: [Scenario; 4] = [
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

/// What every measurement shares: the Redis, the load settings, the CPUs.
struct Bench<'a> {
    redis: &'a RedisServer,
    admin: redis::Connection,
    duration: Duration,
    connections: u32,
    server_cpu: Option<usize>,
    load_cpu: Option<usize>,
}

/// One measured row.
struct Row {
    scenario: &'static str,
    store: StoreKind,
    load: LoadResult,
    commands: f64,
    round_trips: f64,
}

/// Runs the benchmark and prints its tables.
///
/// # Errors
/// When Redis, the server or the load generator cannot be run.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    let (server_cpu, load_cpu) = if cpus >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let redis = RedisServer::start(&[])?;
    if let Some(cpu) = load_cpu {
        pin_process(redis.pid(), cpu)?;
    }
    let mut bench = Bench {
        redis: &redis,
        admin: redis::Client::open(redis.url())?.get_connection()?,
        duration: Duration::from_secs(args.seconds),
        connections: args.connections,
        server_cpu,
        load_cpu,
    };

    println!("## session-store vs actix-session's RedisSessionStore\n");
    println!(
        "{cpus} CPUs; server (1 actix worker) {}; redis-server and load {}; load: {}, {} connections; \
         the median of {} rounds of {} s per row, the stores taking turns.\n",
        server_cpu.map_or("unpinned".to_owned(), |c| format!("on CPU {c}")),
        load_cpu.map_or("unpinned".to_owned(), |c| format!("on CPU {c}")),
        load::generator(),
        args.connections,
        args.rounds.max(1),
        args.seconds,
    );

    let mut rows = Vec::new();
    for scenario in &SCENARIOS {
        let mut rounds: Vec<Vec<Row>> = STORES.iter().map(|_| Vec::new()).collect();
        for _ in 0..args.rounds.max(1) {
            for (store, measured) in STORES.iter().zip(&mut rounds) {
                measured.push(bench.measure(scenario, *store)?);
            }
        }
        for measured in rounds {
            rows.push(median(measured));
        }
        eprintln!("measured: {}", scenario.name);
    }
    let ceiling = bench.measure(&SCENARIOS[1], StoreKind::None)?;
    let mut admin = bench.admin;
    print_load_table(&rows, &ceiling);

    println!(
        "\n### Lost updates: {} concurrent requests of one session, each setting its own entry\n",
        args.writers
    );
    println!("| store | entries kept | lost |\n|---|---|---|");
    for store in STORES {
        redis::cmd("FLUSHALL").exec(&mut admin)?;
        let kept = concurrent_writers(store, &redis, args.writers, server_cpu)?;
        println!("| {} | {kept} | {} |", store.label(), args.writers - kept);
    }

    println!(
        "\n### Redis memory per session: {} sessions of three small entries\n",
        args.sessions
    );
    println!("| store | bytes per session |\n|---|---|");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    redis::cmd("FLUSHALL").exec(&mut admin)?;
    let ours = session_store::RedisSessionStore::from_url(&redis.url())?;
    let ours = runtime.block_on(memory_per_session(&ours, &mut admin, args.sessions))?;
    redis::cmd("FLUSHALL").exec(&mut admin)?;
    let anchor = runtime.block_on(actix_session::storage::RedisSessionStore::new(redis.url()))?;
    let anchor = runtime.block_on(memory_per_session(&anchor, &mut admin, args.sessions))?;
    println!("| {} | {ours:.0} |", StoreKind::Ours.label());
    println!("| actix-session | {anchor:.0} |");
    println!(
        "\nsession-store uses {:.2}× the memory of actix-session's store.",
        ours / anchor
    );
    Ok(())
}

impl Bench<'_> {
    /// One round of `scenario` on `store`, on an emptied Redis and a fresh server.
    fn measure(&mut self, scenario: &Scenario, store: StoreKind) -> anyhow::Result<Row> {
        redis::cmd("FLUSHALL").exec(&mut self.admin)?;
        let server = Server::start(store, scenario.policy, self.redis, self.server_cpu)?;
        let cookie = if scenario.logged_in && store != StoreKind::None {
            Some(server.login()?)
        } else {
            None
        };
        let request = Request {
            method: scenario.method,
            path: scenario.path,
            cookie,
        };
        let warm_up = Duration::from_secs(1);
        load::run(
            server.port,
            &request,
            warm_up,
            self.connections,
            self.load_cpu,
        )?;
        redis_stats::reset(&mut self.admin)?;
        let load = load::run(
            server.port,
            &request,
            self.duration,
            self.connections,
            self.load_cpu,
        )?;
        let stats = CommandStats::read(&mut self.admin)?;
        let per_request = |count: u64| count as f64 / load.requests.max(1) as f64;
        Ok(Row {
            scenario: scenario.name,
            store,
            load,
            commands: per_request(stats.executed()),
            round_trips: per_request(stats.round_trips()),
        })
    }
}

/// The round with the median throughput.
fn median(mut rounds: Vec<Row>) -> Row {
    rounds.sort_by(|a, b| a.load.rate.total_cmp(&b.load.rate));
    let middle = rounds.len() / 2;
    rounds.swap_remove(middle)
}

fn print_load_table(rows: &[Row], ceiling: &Row) {
    println!(
        "| scenario | store | req/s | p50 ms | p99 ms | errors | Redis commands/req (scripts' included) | round trips/req | session-store's speed-up |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let ours: HashMap<&str, f64> = rows
        .iter()
        .filter(|row| row.store == StoreKind::Ours)
        .map(|row| (row.scenario, row.load.rate))
        .collect();
    for row in rows.iter().chain([ceiling]) {
        let speed_up = match row.store {
            StoreKind::Ours | StoreKind::None => "".to_owned(),
            _ => format!("{:.2}×", ours[row.scenario] / row.load.rate),
        };
        let scenario = if row.store == StoreKind::None {
            "read (ceiling)"
        } else {
            row.scenario
        };
        println!(
            "| {scenario} | {} | {:.0} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {speed_up} |",
            row.store.label(),
            row.load.rate,
            row.load.p50_ms,
            row.load.p99_ms,
            row.load.errors,
            row.commands,
            row.round_trips,
        );
    }
}

/// `writers` concurrent requests of one session, each setting its own entry; returns how
/// many of the entries the session kept.
fn concurrent_writers(
    store: StoreKind,
    redis: &RedisServer,
    writers: usize,
    cpu: Option<usize>,
) -> anyhow::Result<usize> {
    let server = Server::start(store, Policy::Changes, redis, cpu)?;
    let cookie = server.login()?;
    let threads: Vec<_> = (0..writers)
        .map(|i| {
            let (url, cookie) = (
                format!("http://127.0.0.1:{}/set/e{i}", server.port),
                cookie.clone(),
            );
            thread::spawn(move || {
                ureq::post(&url)
                    .header("cookie", &cookie)
                    .send_empty()
                    .map(|_| ())
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a writer thread")?;
    }
    let kept = ureq::get(&format!("http://127.0.0.1:{}/count", server.port))
        .header("cookie", &cookie)
        .call()?
        .body_mut()
        .read_to_string()?;
    Ok(kept.trim().parse()?)
}

/// Average growth of Redis's `used_memory` per session saved through `store`.
async fn memory_per_session<S: SessionStore>(
    store: &S,
    admin: &mut redis::Connection,
    sessions: usize,
) -> anyhow::Result<f64> {
    let before = redis_stats::used_memory(admin)?;
    let state: HashMap<String, String> = LOGIN_STATE
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let ttl = CookieDuration::days(1);
    for batch in (0..sessions).collect::<Vec<_>>().chunks(256) {
        try_join_all(batch.iter().map(|_| store.save(state.clone(), &ttl)))
            .await
            .map_err(|err| anyhow::anyhow!("{err}"))?;
    }
    let after = redis_stats::used_memory(admin)?;
    Ok(after.saturating_sub(before) as f64 / sessions as f64)
}

/// A `bench serve` process, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(
        store: StoreKind,
        policy: Policy,
        redis: &RedisServer,
        cpu: Option<usize>,
    ) -> anyhow::Result<Self> {
        let port = local_redis::free_port()?;
        let exe = std::env::current_exe()?;
        let child = load::pinned(cpu, &exe.to_string_lossy())
            .args([
                "serve",
                "--store",
                store.arg(),
                "--redis-url",
                &redis.url(),
                "--port",
                &port.to_string(),
            ])
            .args([
                "--policy",
                if policy == Policy::Every {
                    "every"
                } else {
                    "changes"
                },
            ])
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
    fn login(&self) -> anyhow::Result<String> {
        let response = ureq::post(&format!("http://127.0.0.1:{}/login", self.port)).send_empty()?;
        let cookie = response
            .headers()
            .get("set-cookie")
            .context("login set no cookie")?
            .to_str()?;
        Ok(cookie.split(';').next().unwrap_or_default().to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Moves every thread of process `pid` onto CPU `cpu`.
fn pin_process(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("taskset (from util-linux) is needed to pin processes")?;
    anyhow::ensure!(status.success(), "taskset could not pin process {pid}");
    Ok(())
}

//! What the demo's metrics cost: read and write throughput of one app served with no `metrics`
//! recorder, with the demo's Prometheus recorder (its buckets, and the stats sampler rendering
//! every second) recording the store's metrics only, and with the demo's whole setup (that and
//! the HTTP request middleware), in one run.
//!
//! ```sh
//! cargo run --release -p demo-app --example metrics_cost            # about 3 minutes
//! cargo run --release -p demo-app --example metrics_cost -- --help
//! ```
//!
//! The setup is the benchmark's (`bench/`): one Redis of its own, a server process with one
//! actix worker pinned to CPU 0, redis-server and wrk (`-t1 -c32`) pinned to CPU 1, the same
//! routes (`GET /read` of a session's entry with the expiry slid every request, `POST /write`
//! of one entry), session-store behind `TrackChanges`. Each round starts a fresh server per
//! setup, warms it for a second and measures; the setups take turns. Reported: the medians
//! of each setup's rounds, and the medians of each round's ratios to the no-recorder server
//! measured just before, which hold steadier on a busy machine. Server CPU per request (from
//! `/proc`) is reported beside the rate: other processes taking turns on the server's CPU
//! lower the rate, much less the CPU each request takes. It needs `taskset`, and `wrk` for
//! figures comparable with the benchmark's (without it, the benchmark's generator in Rust).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Child, Stdio},
    time::Duration,
};

use actix_session::{SessionMiddleware, config::PersistentSession};
use actix_web::{App, HttpResponse, HttpServer, cookie::Key, middleware::from_fn, web};
use anyhow::{Context as _, bail};
use bench::{
    load::{self, LoadResult, Request},
    routes,
};
use clap::{Parser, Subcommand, ValueEnum};
use demo_app::web::{
    metrics::{Metrics, record_request},
    stats::Stats,
};
use session_store::{RedisSessionStore, TrackChanges};

#[derive(Debug, Parser)]
#[command(about = "Read and write throughput with the demo's Prometheus metrics vs none")]
struct Cli {
    #[command(subcommand)]
    command: Option<Step>,
    /// Rounds per scenario and setup, the setups taking turns; medians are reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of measured load per round (after one second of warm-up).
    #[arg(long, default_value_t = 4)]
    seconds: u64,
    /// Concurrent connections of wrk.
    #[arg(long, default_value_t = 32)]
    connections: u32,
}

#[derive(Debug, Subcommand)]
enum Step {
    /// Serves the app (the runner starts it; not for people).
    Serve {
        #[arg(long, value_enum)]
        recorder: Recorder,
        #[arg(long)]
        redis_url: String,
        #[arg(long)]
        port: u16,
    },
}

/// What records the metrics the store and the app emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Recorder {
    /// No recorder installed: the `metrics` facade's no-op.
    None,
    /// The demo's Prometheus recorder and its stats sampler (a rendering every second), with
    /// the store's metrics only: no request middleware.
    StoreOnly,
    /// The demo's whole setup: the above and the request middleware.
    Demo,
}

impl Recorder {
    fn label(self) -> &'static str {
        match self {
            Self::None => "no recorder",
            Self::StoreOnly => "Prometheus, store metrics only",
            Self::Demo => "Prometheus, the demo's (store and HTTP metrics)",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StoreOnly => "store-only",
            Self::Demo => "demo",
        }
    }
}

/// One load scenario.
struct Scenario {
    name: &'static str,
    method: &'static str,
    path: &'static str,
}

const SCENARIOS: [Scenario; 2] = [
    Scenario {
        name: "read, expiry slid every request",
        method: "GET",
        path: "/read",
    },
    Scenario {
        name: "write one entry",
        method: "POST",
        path: "/write",
    },
];

const RECORDERS: [Recorder; 3] = [Recorder::None, Recorder::StoreOnly, Recorder::Demo];

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Step::Serve {
            recorder,
            redis_url,
            port,
        }) => actix_web::rt::System::new().block_on(serve(recorder, &redis_url, port)),
        None => run(&cli),
    }
}

async fn serve(recorder: Recorder, redis_url: &str, port: u16) -> anyhow::Result<()> {
    // Installed before the store is built, as the demo does.
    let metrics = match recorder {
        Recorder::None => None,
        Recorder::StoreOnly | Recorder::Demo => {
            let metrics = Metrics::install()?;
            Stats::start(metrics.clone());
            Some(metrics)
        }
    };
    let store = RedisSessionStore::from_url(redis_url)?;
    let middleware = move || {
        TrackChanges::new(
            SessionMiddleware::builder(store.clone(), Key::from(&[7u8; 64]))
                .cookie_secure(false)
                .session_lifecycle(PersistentSession::default().session_ttl_extension_policy(
                    actix_session::config::TtlExtensionPolicy::OnEveryRequest,
                ))
                .build(),
        )
    };
    let server = match recorder {
        Recorder::None => HttpServer::new(move || App::new().wrap(middleware()).configure(routes))
            .workers(1)
            .bind(("127.0.0.1", port))?
            .run(),
        Recorder::StoreOnly => {
            let metrics = web::Data::new(metrics.context("installed")?);
            HttpServer::new(move || {
                App::new()
                    .wrap(middleware())
                    .app_data(metrics.clone())
                    .route("/metrics", web::get().to(exposition))
                    .configure(routes)
            })
            .workers(1)
            .bind(("127.0.0.1", port))?
            .run()
        }
        Recorder::Demo => {
            let metrics = web::Data::new(metrics.context("installed")?);
            HttpServer::new(move || {
                App::new()
                    .wrap(middleware())
                    .wrap(from_fn(record_request))
                    .app_data(metrics.clone())
                    .route("/metrics", web::get().to(exposition))
                    .configure(routes)
            })
            .workers(1)
            .bind(("127.0.0.1", port))?
            .run()
        }
    };
    server.await?;
    Ok(())
}

async fn exposition(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok().body(metrics.render())
}

/// One measured round.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// What the load generator saw.
    load: LoadResult,
    /// Store operations the server's recorder counted (Prometheus only).
    recorded: Option<f64>,
    /// CPU time the server process spent per request, in microseconds: unlike the rate, it
    /// holds steady when other processes take turns on the server's CPU.
    cpu_us: f64,
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let redis = local_redis::RedisServer::start(&[])?;
    bench::cpu::pin(redis.pid(), 1)?;
    println!(
        "## The demo's metrics: no recorder vs Prometheus\n\n\
         server (1 actix worker) on CPU 0; redis-server and {} (one thread, {} connections) on \
         CPU 1; the median of {} rounds of {} s per cell, the setups taking turns in each \
         round.\n",
        load::generator(),
        cli.connections,
        cli.rounds,
        cli.seconds
    );
    println!(
        "Server CPU per request: all the server's threads (/proc/PID/task/*/schedstat) over \
         wrk's completed requests. The ratios are the medians of each round's own (a setup \
         against the no-recorder server measured just before it), which holds steadier than \
         the rates when other processes share the CPUs.\n"
    );
    println!(
        "| scenario | setup | req/s | vs none | server CPU µs/request | vs none | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for scenario in &SCENARIOS {
        let mut rounds: Vec<Vec<Round>> = RECORDERS.iter().map(|_| Vec::new()).collect();
        for _ in 0..cli.rounds.max(1) {
            for (recorder, measured) in RECORDERS.iter().zip(&mut rounds) {
                measured.push(measure(cli, scenario, *recorder, &redis.url())?);
            }
        }
        report(scenario, &rounds);
    }
    Ok(())
}

/// Prints the table's rows for `scenario`, and every round on stderr. `rounds` holds each
/// setup's rounds, in the order of `RECORDERS`.
fn report(scenario: &Scenario, rounds: &[Vec<Round>]) {
    // A round in which any setup saw an error (a stall of the shared machine, say) is left
    // out whole, so that every ratio compares servers measured side by side.
    let clean: Vec<usize> = (0..rounds[0].len())
        .filter(|&round| {
            rounds
                .iter()
                .all(|measured| measured[round].load.errors == 0)
        })
        .collect();
    if clean.len() < rounds[0].len() {
        eprintln!(
            "{}: {} of {} rounds left out for errors",
            scenario.name,
            rounds[0].len() - clean.len(),
            rounds[0].len()
        );
    }
    let none = &rounds[0];
    for (recorder, measured) in RECORDERS.iter().zip(rounds) {
        let of = |value: fn(&Round) -> f64| median_of(clean.iter().map(|&i| value(&measured[i])));
        let paired = |value: fn(&Round) -> f64| {
            median_of(clean.iter().map(|&i| value(&measured[i]) / value(&none[i])))
        };
        println!(
            "| {} | {} | {:.0} | {:.3}× | {:.1} | {:.3}× | {:.2} | {:.2} |",
            scenario.name,
            recorder.label(),
            of(|round| round.load.rate),
            paired(|round| round.load.rate),
            of(|round| round.cpu_us),
            paired(|round| round.cpu_us),
            of(|round| round.load.p50_ms),
            of(|round| round.load.p99_ms),
        );
    }
    for (recorder, measured) in RECORDERS.iter().zip(rounds) {
        let rounds: Vec<String> = measured
            .iter()
            .map(|r| {
                format!(
                    "{:.0} req/s {:.1} µs {} errors",
                    r.load.rate, r.cpu_us, r.load.errors
                )
            })
            .collect();
        eprintln!(
            "{} / {}: {}",
            scenario.name,
            recorder.label(),
            rounds.join(", ")
        );
        if *recorder != Recorder::None {
            let counted = measured
                .iter()
                .all(|round| round.recorded.unwrap_or(0.0) >= round.load.requests as f64);
            eprintln!("  its recorder counted a store operation per request: {counted}");
        }
    }
}

/// One round of `scenario` on a fresh server with `recorder`.
fn measure(
    cli: &Cli,
    scenario: &Scenario,
    recorder: Recorder,
    redis_url: &str,
) -> anyhow::Result<Round> {
    let server = Server::start(recorder, redis_url)?;
    let request = Request {
        method: scenario.method,
        path: scenario.path,
        cookies: vec![server.login()?],
    };
    let load = |seconds| {
        load::run(
            server.port,
            &request,
            Duration::from_secs(seconds),
            cli.connections,
            Some(1),
        )
    };
    load(1)?;
    let before = server.operations_recorded(recorder)?;
    let cpu_before = server.cpu_time()?;
    let load = load(cli.seconds)?;
    let cpu = server.cpu_time()? - cpu_before;
    let after = server.operations_recorded(recorder)?;
    Ok(Round {
        load,
        recorded: after.zip(before).map(|(after, before)| after - before),
        cpu_us: cpu.as_secs_f64() * 1e6 / load.requests.max(1) as f64,
    })
}

/// The median of `values` (the upper one of an even count).
fn median_of(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A server process on CPU 0, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(recorder: Recorder, redis_url: &str) -> anyhow::Result<Self> {
        let port = local_redis::free_port()?;
        let exe = std::env::current_exe()?;
        let child = load::pinned(Some(0), &exe.to_string_lossy())
            .args(["serve", "--recorder", recorder.arg()])
            .args(["--redis-url", redis_url, "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the server under taskset (from util-linux)")?;
        let server = Self { child, port };
        if !local_redis::wait_until_listening(port, Duration::from_secs(10)) {
            bail!("the server did not listen within 10 s");
        }
        Ok(server)
    }

    /// Logs in and returns the session cookie as `name=value`.
    fn login(&self) -> anyhow::Result<String> {
        let answer = exchange(self.port, "POST /login", "Content-Length: 0\r\n")?;
        answer
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("set-cookie").then(|| {
                    value
                        .trim()
                        .split(';')
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                })
            })
            .context("the login set no cookie")
    }

    /// The CPU time every thread of the server has spent so far (`/proc/PID/task/*/schedstat`,
    /// in nanoseconds). `taskset` execs the server, so the child's pid is the server's.
    fn cpu_time(&self) -> anyhow::Result<Duration> {
        let mut total = 0;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.child.id()))? {
            let stat = std::fs::read_to_string(task?.path().join("schedstat"))?;
            let on_cpu: u64 = stat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse().ok())
                .context("an unexpected schedstat")?;
            total += on_cpu;
        }
        Ok(Duration::from_nanos(total))
    }

    /// The store operations the server's Prometheus recorder counted so far.
    fn operations_recorded(&self, recorder: Recorder) -> anyhow::Result<Option<f64>> {
        if recorder == Recorder::None {
            return Ok(None);
        }
        let answer = exchange(self.port, "GET /metrics", "")?;
        Ok(Some(
            answer
                .lines()
                .filter(|line| line.starts_with("session_store_operations_total{"))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a connection of its own; the whole answer.
fn exchange(port: u16, request_line: &str, headers: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

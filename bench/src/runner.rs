//! `bench run`: every scenario against every store on one Redis server, then session-store on
//! one server and on clusters of one to three primaries, in one run, then tables.

use std::{thread, time::Duration};

use actix_session::storage::SessionStore;
use clap::{Args, ValueEnum};

use crate::{
    NEAR_CACHE_SESSIONS, Policy, StoreKind,
    backend::Backend,
    load,
    measure::{Bench, Row, SCENARIOS, Server, Spread, Summary, summarize},
    near_memory, save_logged_in, scaling,
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
    /// Logged-in sessions taking turns in the cluster comparison, so that the load spreads
    /// over every primary.
    #[arg(long, default_value_t = 256)]
    pub cluster_sessions: usize,
    /// Logged-in sessions read at random in the near cache's many-sessions rows.
    #[arg(long, default_value_t = 5_000)]
    pub near_sessions: usize,
    /// Run only these parts (all of them by default).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
}

/// The parts of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// session-store against actix-session's stores on one server, and the lost updates.
    Stores,
    /// session-store on one server and on clusters of one, two and three primaries.
    Cluster,
    /// Redis memory per session, and the near cache's memory per session.
    Memory,
    /// session-store with each of its optional features on, against itself with them off.
    Features,
    /// session-store in the migrating step of a switch from actix-session's store (its
    /// sessions all its own), against itself without the setting.
    Legacy,
    /// session-store with its entries sealed (the default) and in clear, and actix-session's
    /// store, against session-store in clear.
    Sealing,
    /// session-store with its near cache against itself without, actix-session's Redis store
    /// and its cookie store: hot reads of one session and of 5,000, and writes.
    Near,
}

/// The stores compared, ours first.
const STORES: [StoreKind; 3] = [StoreKind::Ours, StoreKind::ActixCm, StoreKind::ActixPool];

/// session-store with its optional features off, then with each on (alone).
const FEATURES: [StoreKind; 4] = [
    StoreKind::Ours,
    StoreKind::OursIndexed,
    StoreKind::OursEvents,
    StoreKind::OursDurable,
];

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
    let bench = Bench {
        duration: Duration::from_secs(args.seconds),
        connections: args.connections,
        server_cpu,
        load_cpu,
    };
    let wanted = |part| args.only.is_empty() || args.only.contains(&part);
    let setup = format!(
        "{cpus} CPUs; server (1 actix worker) {}; redis-server and load {}; load: {}, {} connections; \
         the median of {} rounds of {} s per row",
        server_cpu.map_or("unpinned".to_owned(), |c| format!("on CPU {c}")),
        load_cpu.map_or("unpinned".to_owned(), |c| format!("on CPU {c}")),
        load::generator(),
        args.connections,
        args.rounds.max(1),
        args.seconds,
    );
    if wanted(Part::Stores) {
        let mut redis = Backend::server(load_cpu)?;
        compare_stores(&bench, &mut redis, args, &setup)?;
    }
    if wanted(Part::Cluster) {
        scaling::run(&bench, args.rounds.max(1), args.cluster_sessions, &setup)?;
    }
    if wanted(Part::Memory) {
        memory(args.sessions, load_cpu)?;
    }
    if wanted(Part::Features) {
        let mut redis = Backend::replicated(load_cpu)?;
        println!("\n## What session-store's optional features cost\n");
        println!(
            "{setup}, the setups taking turns. The index is of the `user` entry (every login of \
             the benchmark is alice's, so past her first 100 every login ends her oldest session: \
             a worst case); \
             events are published with nobody subscribed; every setup runs against a primary \
             with a replica (for `WAIT`; the replica's CPU is left out). Ratios are each setup's \
             figure over session-store's with its features off. (Round trips are left out: the estimate from \
             `INFO commandstats` does not know these features' commands; the round-trip tests \
             count them on the wire.)\n"
        );
        compare_setups(&bench, &mut redis, args, &FEATURES)?;
    }
    if wanted(Part::Legacy) {
        let mut redis = Backend::server(load_cpu)?;
        println!("\n## What the legacy setting costs\n");
        println!(
            "{setup}, the setups taking turns: session-store with \
             `legacy_sessions(LegacySessions::migrate())`, every session its own (the state of \
             an application once its old sessions have moved), over session-store without the \
             setting.\n"
        );
        compare_setups(
            &bench,
            &mut redis,
            args,
            &[StoreKind::Ours, StoreKind::OursLegacy],
        )?;
    }
    if wanted(Part::Sealing) {
        let mut redis = Backend::server(load_cpu)?;
        println!("\n## What sealing costs\n");
        println!(
            "{setup}, the setups taking turns: session-store with its entries sealed (the \
             default; every entry of the benchmark's sessions is sealed) and actix-session's \
             store (ConnectionManager), over session-store with its entries in clear \
             (`seal_entries(false)`).\n"
        );
        compare_setups(
            &bench,
            &mut redis,
            args,
            &[StoreKind::OursClear, StoreKind::Ours, StoreKind::ActixCm],
        )?;
    }
    if wanted(Part::Near) {
        let mut redis = Backend::server(load_cpu)?;
        println!("\n## The near cache\n");
        println!(
            "{setup}, the setups taking turns. Hot reads slide the expiry on every request \
             (`OnEveryRequest`), of one session and of {} sessions picked at random (all \
             within the cache's 10,000); writes change one entry of one session. Ratios are \
             session-store with its near cache over actix-session's cookie store (the same \
             middleware with no server-side store) and over actix-session's Redis store \
             (ConnectionManager). Redis commands include the near cache's heartbeats.\n",
            args.near_sessions
        );
        near(&bench, &mut redis, args)?;
    }
    Ok(())
}

/// The setups of the near cache's comparison: with it first.
const NEAR: [StoreKind; 4] = [
    StoreKind::OursNear,
    StoreKind::Ours,
    StoreKind::ActixCm,
    StoreKind::Cookie,
];

/// Hot reads of one session and of many, and writes, on each of [`NEAR`], in rounds where
/// the setups take turns; a table with throughput, CPU and commands, and the ratios.
fn near(bench: &Bench, redis: &mut Backend, args: &RunArgs) -> anyhow::Result<()> {
    let cases = [
        (&SCENARIOS[0], 1),
        (&SCENARIOS[0], args.near_sessions),
        (&SCENARIOS[2], 1),
    ];
    println!(
        "| scenario | sessions | setup | req/s | server CPU µs/req | Redis commands/req | req/s vs cookie store | req/s vs actix-session Redis | server CPU vs actix-session Redis |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (scenario, sessions) in cases {
        let mut measured: Vec<Vec<Row>> = NEAR.iter().map(|_| Vec::new()).collect();
        for _ in 0..args.rounds.max(1) {
            for (store, rounds) in NEAR.iter().zip(&mut measured) {
                rounds.push(bench.measure(redis, scenario, *store, sessions)?);
            }
        }
        let rows: Vec<Summary> = measured.into_iter().map(summarize).collect();
        let of = |store| {
            rows.iter()
                .find(|summary| summary.row.store == store)
                .expect("every setup measured")
        };
        let (cookie, actix) = (of(StoreKind::Cookie), of(StoreKind::ActixCm));
        let spread = |s: &Spread, decimals: usize| {
            format!(
                "{:.decimals$} ({:.decimals$}–{:.decimals$})",
                s.median, s.min, s.max
            )
        };
        for summary in &rows {
            let row = &summary.row;
            let ratio =
                |other: &Summary| format!("{:.2}×", summary.rate.median / other.rate.median);
            let (vs_cookie, vs_actix) = if row.store.is_ours() {
                (ratio(cookie), ratio(actix))
            } else {
                (String::new(), String::new())
            };
            let cpu = if row.store.is_ours() {
                format!("{:.2}×", summary.server_us.median / actix.server_us.median)
            } else {
                String::new()
            };
            println!(
                "| {} | {sessions} | {} | {} | {} | {:.3} | {vs_cookie} | {vs_actix} | {cpu} |",
                scenario.name,
                row.store.label(),
                spread(&summary.rate, 0),
                spread(&summary.server_us, 1),
                row.commands,
            );
        }
        eprintln!("measured: {} ({sessions} sessions)", scenario.name);
    }
    Ok(())
}

/// Every scenario on each of `stores`, in `rounds` rounds where the stores take turns.
fn interleaved(
    bench: &Bench,
    redis: &mut Backend,
    stores: &[StoreKind],
    rounds: usize,
) -> anyhow::Result<Vec<Summary>> {
    let mut rows = Vec::new();
    for scenario in &SCENARIOS {
        let mut measured: Vec<Vec<Row>> = stores.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds.max(1) {
            for (store, rounds) in stores.iter().zip(&mut measured) {
                rounds.push(bench.measure(redis, scenario, *store, 1)?);
            }
        }
        rows.extend(measured.into_iter().map(summarize));
        eprintln!("measured: {}", scenario.name);
    }
    Ok(rows)
}

/// session-store against actix-session's two modes on one server, one session: throughput,
/// commands and round trips, then the lost updates of concurrent writers.
fn compare_stores(
    bench: &Bench,
    redis: &mut Backend,
    args: &RunArgs,
    setup: &str,
) -> anyhow::Result<()> {
    println!("## session-store vs actix-session's RedisSessionStore\n");
    println!(
        "{setup}, the stores taking turns. CPU per request: of the server process and of \
         redis-server (`INFO cpu`), the median of the rounds and, in brackets, the lowest and \
         highest; unlike req/s, it hardly depends on what else the machine runs. Ratios are \
         session-store's figure over the other store's.\n"
    );
    let rows = interleaved(bench, redis, &STORES, args.rounds)?;
    let ceiling = summarize(vec![bench.measure(
        redis,
        &SCENARIOS[1],
        StoreKind::None,
        1,
    )?]);
    print_cpu_table(&rows, &ceiling);
    print_load_table(&rows, &ceiling);

    println!(
        "\n### Lost updates: {} concurrent requests of one session, each setting its own entry\n",
        args.writers
    );
    println!("| store | entries kept | lost |\n|---|---|---|");
    for store in STORES {
        redis.flush()?;
        let kept = concurrent_writers(store, redis, args.writers, bench.server_cpu)?;
        println!("| {} | {kept} | {} |", store.label(), args.writers - kept);
    }
    Ok(())
}

/// What each of `setups` costs: its figures against the first of `setups`', in every scenario,
/// the setups taking turns.
fn compare_setups(
    bench: &Bench,
    redis: &mut Backend,
    args: &RunArgs,
    setups: &[StoreKind],
) -> anyhow::Result<()> {
    let rows = interleaved(bench, redis, setups, args.rounds)?;
    let base = setups[0];
    println!(
        "| scenario | setup | server CPU µs/req | ratio | Redis CPU µs/req | ratio | Redis commands/req (scripts' included) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let spread = |s: &Spread| format!("{:.1} ({:.1}–{:.1})", s.median, s.min, s.max);
    for summary in &rows {
        let row = &summary.row;
        let (server_ratio, redis_ratio) = if row.store == base {
            (String::new(), String::new())
        } else {
            let off = measured(&rows, base, row.scenario);
            (
                format!("{:.2}×", summary.server_us.median / off.server_us.median),
                format!("{:.2}×", summary.redis_us.median / off.redis_us.median),
            )
        };
        println!(
            "| {} | {} | {} | {server_ratio} | {} | {redis_ratio} | {:.2} |",
            row.scenario,
            row.store.label(),
            spread(&summary.server_us),
            spread(&summary.redis_us),
            row.commands,
        );
    }
    Ok(())
}

/// session-store's figure of `scenario` for the store measured in `row`.
fn ours<'a>(rows: &'a [Summary], scenario: &str) -> &'a Summary {
    measured(rows, StoreKind::Ours, scenario)
}

/// The figure of `store` in `scenario`.
fn measured<'a>(rows: &'a [Summary], store: StoreKind, scenario: &str) -> &'a Summary {
    rows.iter()
        .find(|summary| summary.row.store == store && summary.row.scenario == scenario)
        .expect("every setup measured in every scenario")
}

/// The scenario's name in a table: the no-session server serves reads only.
fn scenario_label(row: &Row) -> &'static str {
    if row.store == StoreKind::None {
        "read (ceiling)"
    } else {
        row.scenario
    }
}

fn print_cpu_table(rows: &[Summary], ceiling: &Summary) {
    println!("### CPU per request\n");
    println!(
        "| scenario | store | server CPU µs/req | session-store's ratio | Redis CPU µs/req | session-store's ratio |"
    );
    println!("|---|---|---|---|---|---|");
    let spread = |s: &Spread| format!("{:.1} ({:.1}–{:.1})", s.median, s.min, s.max);
    for summary in rows.iter().chain([ceiling]) {
        let row = &summary.row;
        let (server_ratio, redis_ratio) = match row.store {
            StoreKind::Ours | StoreKind::None => (String::new(), String::new()),
            _ => {
                let ours = ours(rows, row.scenario);
                (
                    format!("{:.2}×", ours.server_us.median / summary.server_us.median),
                    format!("{:.2}×", ours.redis_us.median / summary.redis_us.median),
                )
            }
        };
        println!(
            "| {} | {} | {} | {server_ratio} | {} | {redis_ratio} |",
            scenario_label(row),
            row.store.label(),
            spread(&summary.server_us),
            spread(&summary.redis_us),
        );
    }
}

fn print_load_table(rows: &[Summary], ceiling: &Summary) {
    println!("\n### Throughput, latency and Redis traffic (the round of median req/s)\n");
    println!(
        "| scenario | store | req/s | p50 ms | p99 ms | errors | Redis commands/req (scripts' included) | round trips/req | session-store's speed-up |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for summary in rows.iter().chain([ceiling]) {
        let row = &summary.row;
        let speed_up = match row.store {
            StoreKind::Ours | StoreKind::None => String::new(),
            _ => format!(
                "{:.2}×",
                ours(rows, row.scenario).row.load.rate / row.load.rate
            ),
        };
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {speed_up} |",
            scenario_label(row),
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
    redis: &Backend,
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

/// Redis memory per session: session-store and actix-session on one server, session-store on
/// a cluster of three primaries; then the near cache's memory per session.
fn memory(sessions: usize, cpu: Option<usize>) -> anyhow::Result<()> {
    println!("\n### Redis memory per session: {sessions} sessions of three small entries\n");
    println!("| store | Redis | bytes per session |\n|---|---|---|");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut redis = Backend::server(cpu)?;
    let url = redis.urls()[0].clone();
    let ours = session_store::RedisSessionStore::from_url(&url)?;
    let ours = runtime.block_on(memory_per_session(&ours, &mut redis, sessions))?;
    redis.flush()?;
    let anchor = runtime.block_on(actix_session::storage::RedisSessionStore::new(url))?;
    let anchor = runtime.block_on(memory_per_session(&anchor, &mut redis, sessions))?;
    let mut cluster = Backend::cluster(3, cpu)?;
    let on_cluster = session_store::RedisSessionStore::builder()
        .build_with_manager(session_store::Manager::cluster(cluster.urls().to_vec())?)?;
    let on_cluster = runtime.block_on(memory_per_session(&on_cluster, &mut cluster, sessions))?;
    let ours_label = StoreKind::Ours.label();
    println!("| {ours_label} | {} | {ours:.0} |", redis.label());
    println!("| actix-session | {} | {anchor:.0} |", redis.label());
    println!("| {ours_label} | {} | {on_cluster:.0} |", cluster.label());
    println!(
        "\nsession-store uses {:.2}× the memory of actix-session's store on one server; on the \
         cluster, {:.2}× its own on one server.",
        ours / anchor,
        on_cluster / ours
    );
    redis.flush()?;
    near_memory::print(&mut redis, NEAR_CACHE_SESSIONS)
}

/// Average growth of Redis's `used_memory` (all nodes together) per session saved through
/// `store`.
async fn memory_per_session<S: SessionStore>(
    store: &S,
    redis: &mut Backend,
    sessions: usize,
) -> anyhow::Result<f64> {
    let before = redis.used_memory()?;
    save_logged_in(store, sessions).await?;
    let after = redis.used_memory()?;
    Ok(after.saturating_sub(before) as f64 / sessions as f64)
}

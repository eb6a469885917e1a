//! session-store on one Redis server and on clusters of one, two and three primaries (no
//! replicas), every scenario, rounds interleaved across the four setups: the throughput, and
//! what a request costs the server and each Redis node in CPU, which is what says how far
//! more primaries would carry on a machine with a core for each.

use crate::{
    StoreKind,
    backend::Backend,
    measure::{Bench, Row, SCENARIOS, median},
};

/// Primaries of the clusters measured.
const PRIMARIES: [usize; 3] = [1, 2, 3];

/// Measures and prints the table.
///
/// # Errors
/// When Redis, the server or the load generator fails.
pub fn run(bench: &Bench, rounds: usize, sessions: usize, setup: &str) -> anyhow::Result<()> {
    let mut setups = vec![Backend::server(bench.load_cpu)?];
    for primaries in PRIMARIES {
        setups.push(Backend::cluster(primaries, bench.load_cpu)?);
    }
    println!("\n## session-store on one server and on a cluster\n");
    println!(
        "{setup}, the four Redis setups taking turns (every Redis process on the load's CPU); \
         {sessions} logged-in sessions take turns, so that reads and writes spread over the \
         primaries. \"Range\" is the slowest and fastest round; CPU figures are the median \
         round's, per request: the server's, and each Redis node's from `INFO cpu`. \"Busy\" \
         is the share of one CPU each used, with the load generator's: server / all Redis \
         nodes / load; then how busy the two CPUs were, whoever kept them busy (the machine \
         is shared).\n"
    );
    println!(
        "| scenario | Redis | req/s | range | vs one server | p99 ms | Redis commands / round trips per req | server CPU µs/req | Redis CPU µs/req | per node | busy: server / Redis / load | CPUs busy |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for scenario in &SCENARIOS {
        let mut measured: Vec<Vec<Row>> = setups.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            for (redis, rows) in setups.iter_mut().zip(&mut measured) {
                rows.push(bench.measure(redis, scenario, StoreKind::Ours, sessions)?);
            }
        }
        let mut one_server = None;
        for (redis, rows) in setups.iter().zip(measured) {
            let range = range(&rows);
            let row = median(rows);
            let baseline = *one_server.get_or_insert(row.load.rate);
            print_row(&row, redis.label(), range, row.load.rate / baseline);
        }
        eprintln!("measured on one server and the clusters: {}", scenario.name);
    }
    Ok(())
}

/// The slowest and the fastest round's requests per second.
fn range(rows: &[Row]) -> (f64, f64) {
    rows.iter().fold((f64::MAX, 0.0_f64), |(low, high), row| {
        (low.min(row.load.rate), high.max(row.load.rate))
    })
}

fn print_row(row: &Row, redis: &str, (low, high): (f64, f64), ratio: f64) {
    let percents = |shares: &[f64]| -> String {
        let each: Vec<String> = shares
            .iter()
            .map(|share| format!("{:.0}", share * 100.0))
            .collect();
        format!("{}%", each.join(" / "))
    };
    let per_node: Vec<String> = row.redis_us.iter().map(|us| format!("{us:.1}")).collect();
    println!(
        "| {} | {redis} | {:.0} | {low:.0}–{high:.0} | {ratio:.2}× | {:.2} | {:.2} / {:.2} | {:.1} | {:.1} | {} | {} | {} |",
        row.scenario,
        row.load.rate,
        row.load.p99_ms,
        row.commands,
        row.round_trips,
        row.server_us,
        row.redis_us.iter().sum::<f64>(),
        per_node.join(" / "),
        percents(&[row.server_busy, row.redis_busy, row.load_busy]),
        percents(&row.cpus_busy),
    );
}

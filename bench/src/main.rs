//! `bench`: session-store against actix-session's own Redis store, side by side, and
//! session-store on one Redis server against clusters of one to three primaries.
//!
//! `cargo run --release -p bench` runs every scenario and prints markdown tables;
//! `bench serve` is the server it starts for each row.

use bench::{runner, server};
use clap::{Parser, Subcommand};

/// Benchmarks session-store against actix-session's RedisSessionStore (both of its modes):
/// same app, same Redis, same load, one run; then session-store on one Redis server and on
/// clusters of one, two and three primaries, with the CPU each request costs the server and
/// each Redis node; then Redis memory per session; then what session-store's optional
/// features (the users' index, events, `WAIT` for a replica) cost when switched on.
#[derive(Debug, Parser)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: runner::RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the benchmark app with one store (the runner starts these).
    Serve(server::ServeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => runner::run(&cli.run),
        Some(Command::Serve(args)) => actix_web::rt::System::new().block_on(server::serve(args)),
    }
}

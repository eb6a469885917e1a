//! `demo-app`: launches the demo, runs one instance, or hashes a password.

use std::io::{IsTerminal as _, Read as _};

use clap::Parser as _;
use demo_app::{
    cli::{Cli, Command},
    hashing::Hasher,
    instance, launcher,
};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();

    match cli.command {
        None => launcher::run(cli.launch),
        Some(Command::Serve(args)) => actix_web::rt::System::new().block_on(instance::serve(*args)),
        Some(Command::HashPassword) => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            println!(
                "{}",
                Hasher::new()
                    .hash(password.as_bytes())
                    .map_err(|err| anyhow::anyhow!("{err}"))?
            );
            Ok(())
        }
    }
}

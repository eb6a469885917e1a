//! `demo-app`: launches the demo, runs one instance, or hashes a password.

use std::io::Read as _;

use clap::Parser as _;
use demo_app::{
    cli::{Cli, Command},
    launcher, logging,
    web::hashing::Hasher,
    web::{instance, legacy},
};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _logging = logging::init();

    match cli.command {
        None => launcher::run(cli.launch),
        Some(Command::Serve(args)) if args.legacy_store => {
            actix_web::rt::System::new().block_on(legacy::serve(*args))
        }
        Some(Command::Serve(args)) => actix_web::rt::System::new().block_on(instance::serve(*args)),
        Some(Command::Watchdog) => {
            launcher::watchdog::run();
            Ok(())
        }
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

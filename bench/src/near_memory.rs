//! The near cache's memory: how much a process's resident memory grows per session its near
//! cache holds.

use std::time::Duration;

use actix_session::storage::SessionStore;
use futures_util::future::try_join_all;
use session_store::RedisSessionStore;

use crate::{backend::Backend, save_logged_in};

/// Saves `sessions` sessions of three small entries and reads each once, through a store with
/// a near cache of as many sessions and through one without; prints how much this process's
/// resident memory grew per session read, each, and the difference: what a copy costs.
///
/// # Errors
/// When Redis fails a command or the resident memory cannot be read.
pub fn print(redis: &mut Backend, sessions: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = redis.urls()[0].clone();
    let without = runtime.block_on(growth_per_read(
        RedisSessionStore::from_url(&url)?,
        sessions,
    ))?;
    redis.flush()?;
    let with = runtime.block_on(growth_per_read(
        RedisSessionStore::builder()
            .near_cache(sessions)
            .build_with_url(&url)?,
        sessions,
    ))?;
    redis.flush()?;
    println!(
        "\n### Memory of the near cache: {sessions} sessions of three small entries, each read once\n"
    );
    println!("| setup | resident memory growth per session read |\n|---|---|");
    println!("| session-store with near cache | {with:.0} bytes |");
    println!("| session-store | {without:.0} bytes |");
    println!(
        "\nA session in the near cache costs about {:.0} bytes of the instance's memory.",
        with - without
    );
    Ok(())
}

/// Saves `sessions` sessions through `store`, then reads each once: the growth of this
/// process's resident memory over the reads, per session.
async fn growth_per_read(store: RedisSessionStore, sessions: usize) -> anyhow::Result<f64> {
    let keys = save_logged_in(&store, sessions).await?;
    // The near cache's link comes up within milliseconds of the store's start; a read before
    // it keeps no copy.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = resident_bytes()?;
    // Few reads at a time, so that their passing buffers weigh little next to the copies.
    for batch in keys.chunks(8) {
        try_join_all(batch.iter().map(|key| store.load(key)))
            .await
            .map_err(|err| anyhow::anyhow!("{err}"))?;
    }
    let after = resident_bytes()?;
    Ok(after.saturating_sub(before) as f64 / sessions as f64)
}

/// This process's resident memory (`VmRSS`).
fn resident_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))?
        .trim()
        .parse::<u64>()?;
    Ok(kib * 1024)
}

//! When a Sentinel setup is settled, and which primary the sentinels agree on.

use super::MASTER_NAME;
use crate::{
    RedisServer, probe,
    wait::{NotYet, ensure},
};

/// The port of the primary `sentinel` names (`SENTINEL get-master-addr-by-name`).
pub(super) fn named_primary(sentinel: &RedisServer) -> redis::RedisResult<u16> {
    let (_host, port): (String, u16) = probe::query(
        sentinel.port(),
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER_NAME),
    )?;
    Ok(port)
}

/// The index of the server on `port`.
pub(super) fn index_of(servers: &[RedisServer], port: u16) -> Option<usize> {
    servers.iter().position(|server| server.port() == port)
}

/// The server every running sentinel names as the primary, provided it runs and says it is a
/// primary (right after a promotion the sentinels may name it before it has switched).
pub(super) fn agreed_primary(
    servers: &[RedisServer],
    sentinels: &[RedisServer],
) -> Result<usize, NotYet> {
    let mut agreed = None;
    for (index, sentinel) in running(sentinels) {
        let port = named_primary(sentinel)?;
        match agreed {
            Some((first, agreed)) => ensure(agreed == port, || {
                format!("sentinel {index} names port {port}, sentinel {first} port {agreed}")
            })?,
            None => agreed = Some((index, port)),
        }
    }
    let (_, port) = agreed.ok_or_else(|| NotYet::Waiting("no sentinel runs".to_owned()))?;
    let primary = index_of(servers, port)
        .ok_or_else(|| NotYet::Waiting(format!("the sentinels name port {port}, not ours")))?;
    let server = &servers[primary];
    ensure(server.is_running(), || {
        format!("the sentinels name the stopped server {primary}")
    })?;
    let replication = probe::info(server.port(), "replication")?;
    ensure(replication.is("role", "master"), || {
        format!("the sentinels name server {primary}, which is not a primary yet")
    })?;
    Ok(primary)
}

/// Checks that the setup is settled (see `RedisSentinels::wait_until_settled`) and returns its
/// primary.
pub(super) fn check_settled(
    servers: &[RedisServer],
    sentinels: &[RedisServer],
) -> Result<usize, NotYet> {
    let primary = agreed_primary(servers, sentinels)?;
    for (index, sentinel) in running(sentinels) {
        let master = probe::sentinel_master(sentinel.port(), MASTER_NAME)?;
        let others = (sentinels.len() - 1).to_string();
        let replicas: usize = master
            .get("num-slaves")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        ensure(
            master.is("flags", "master")
                && master.is("num-other-sentinels", &others)
                && replicas >= servers.len() - 1,
            || format!("sentinel {index} says {master:?}"),
        )?;
    }
    let primary_port = servers[primary].port().to_string();
    for (index, server) in running(servers).filter(|&(index, _)| index != primary) {
        let replication = probe::info(server.port(), "replication")?;
        ensure(
            replication.is("role", "slave")
                && replication.is("master_port", &primary_port)
                && replication.is("master_link_status", "up"),
            || format!("server {index} is not in sync with server {primary}: {replication:?}"),
        )?;
    }
    Ok(primary)
}

fn running(processes: &[RedisServer]) -> impl Iterator<Item = (usize, &RedisServer)> {
    processes
        .iter()
        .enumerate()
        .filter(|(_, process)| process.is_running())
}

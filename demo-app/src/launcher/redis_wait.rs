//! Waiting at start-up for a Redis the launcher did not start: said once, plainly, then
//! waited for quietly, however long it takes.

use std::{
    io,
    net::{TcpStream, ToSocketAddrs as _},
    os::unix::net::UnixStream,
    sync::mpsc,
    time::Duration,
};

use session_store::redis::{ConnectionAddr, IntoConnectionInfo as _};

use super::Waited;
use crate::redis_target::RedisTarget;

/// How long one attempt to connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How often to try again.
const RETRY: Duration = Duration::from_millis(250);

/// Waits until `target` accepts connections (any one of its nodes or sentinels will do), or
/// until `stop` says to give up; `check` runs between attempts and ends the wait with its
/// error. When the first attempt fails it says why, once.
///
/// Only that Redis accepts connections is checked here: whether the instances can use it
/// (a password, a server still loading) is for their health checks to tell.
pub(super) fn until_redis_answers(
    target: &RedisTarget,
    stop: &mpsc::Receiver<()>,
    mut check: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Waited> {
    let Err(reason) = accepts(target) else {
        return Ok(Waited::Ready);
    };
    println!(
        "{} does not answer: {reason}. Start it, or drop {} to use a private one.",
        target.describe(),
        flag(target)
    );
    loop {
        if stop.recv_timeout(RETRY).is_ok() {
            return Ok(Waited::Stopped);
        }
        check()?;
        if accepts(target).is_ok() {
            println!("{} answers now.", target.describe());
            return Ok(Waited::Ready);
        }
    }
}

/// The flag that named this Redis.
fn flag(target: &RedisTarget) -> &'static str {
    match target {
        RedisTarget::Server(_) => "--redis-url",
        RedisTarget::Cluster(_) => "--redis-cluster",
        RedisTarget::Sentinel { .. } => "--redis-sentinel",
    }
}

/// `Ok` when one of the target's addresses accepts a connection, else why the first did not.
fn accepts(target: &RedisTarget) -> Result<(), String> {
    let urls = match target {
        RedisTarget::Server(url) => std::slice::from_ref(url),
        RedisTarget::Cluster(nodes) => nodes.as_slice(),
        RedisTarget::Sentinel { sentinels, .. } => sentinels.as_slice(),
    };
    let mut first_failure = None;
    for url in urls {
        match connect(url) {
            Ok(()) => return Ok(()),
            Err(reason) => {
                first_failure.get_or_insert(reason);
            }
        }
    }
    Err(first_failure.unwrap_or_else(|| "no address given".to_owned()))
}

/// Opens (and closes) a connection to the address in `url`.
fn connect(url: &str) -> Result<(), String> {
    let info = url.into_connection_info().map_err(|err| {
        let url = crate::redis_target::without_password(url);
        format!("{url} is not a Redis URL ({err})")
    })?;
    let result = match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            connect_tcp(host, *port)
        }
        ConnectionAddr::Unix(path) => UnixStream::connect(path).map(drop),
        _ => return Ok(()),
    };
    result.map_err(|err| describe(&err))
}

fn connect_tcp(host: &str, port: u16) -> io::Result<()> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for address in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// "connection refused" rather than "Connection refused (os error 111)".
fn describe(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::TimedOut
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable => err.kind().to_string(),
        _ => err.to_string(),
    }
}

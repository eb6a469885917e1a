//! The launcher: a private Redis (unless one is given), N instance processes kept running,
//! nginx in front of them, and everything stopped again on Ctrl-C.

pub mod balancer;
mod instances;
mod output;
mod redis_wait;
pub mod watchdog;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use self::{
    balancer::Balancer,
    instances::{Instances, Recipe},
    watchdog::Watchdog,
};
use crate::{
    cli::LaunchArgs,
    cookie_key,
    redis_target::{Embedded, RedisTarget},
};

/// How long the instances may take to answer their health check once Redis accepts
/// connections, before the launcher says it is still waiting.
const SLOW_STARTUP: Duration = Duration::from_secs(10);

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    /// What was waited for is there.
    Ready,
    /// Ctrl-C (or SIGTERM) came first.
    Stopped,
}

/// Launches the demo and returns when it has been stopped.
///
/// # Errors
/// When Redis or an instance cannot be started.
pub fn run(args: LaunchArgs) -> anyhow::Result<()> {
    let ports = ports(&args)?;
    let mut watchdog = Watchdog::start()?;
    // Before anything starts: a Ctrl-C during start-up, which takes seconds for a cluster,
    // must stop what started (the private Redis is out of the terminal's reach).
    let stop = stop_signal()?;
    // Declared first, so dropped last: the instances stop before their Redis does.
    let embedded;
    let target = match RedisTarget::from_args(&args.common)? {
        Some(target) => target,
        None => {
            // The terminal's Ctrl-C reaches the launcher and the instances, not the private
            // Redis: it stops after the instances (dropped last), which would otherwise see
            // it go first and warn that their links to it are down. The watchdog below kills
            // it should the launcher be killed outright.
            local_redis::start_apart_from_the_terminal();
            embedded = Embedded::start(args.topology).context(
                "no --redis-url, --redis-cluster or --redis-sentinel given, and the private \
                 Redis could not be started (name a Redis you run with one of those)",
            )?;
            for server in embedded.servers() {
                watchdog.process(server.pid());
                watchdog.folder(server.dir());
            }
            // Only the demo may reach its sessions: any user of this machine can connect to
            // loopback. New every run, handed to the instances in their environment.
            let password = format!("{:032x}", rand::random::<u128>());
            embedded
                .lock(&password)
                .context("cannot set the private Redis's password")?;
            let target = embedded.target(&password);
            println!(
                "Started a private Redis: {}; it stops with the demo.",
                target.describe()
            );
            target
        }
    };
    anyhow::ensure!(
        args.legacy_instances == 0 || matches!(target, RedisTarget::Server(_)),
        "old instances (--legacy-instances) run actix-session's own store, which talks to one \
         Redis server: use --topology single or --redis-url"
    );
    let cookie_key = cookie_key(&args)?;

    // What nginx proves itself with to the instances, so that they believe the client address
    // it forwards and nobody else's: new every run, never shown.
    let balancer_secret = (!args.no_balancer).then(|| format!("{:032x}", rand::random::<u128>()));
    let recipe = Recipe::new(
        &args,
        &ports,
        target.clone(),
        cookie_key,
        balancer_secret.clone(),
    )?;
    let mut instances = Instances::start(recipe, &ports)?;
    let mut balancer = balancer_secret.and_then(|secret| start_balancer(&args, &ports, &secret));
    if let Some(balancer) = &balancer {
        watchdog.process(balancer.pid());
        watchdog.folder(balancer.dir());
    }
    let waited = redis_wait::until_redis_answers(&target, &stop, || instances.check_started())?;
    if waited == Waited::Ready && wait_until_healthy(&mut instances, &stop)? == Waited::Ready {
        print_banner(&instances, balancer.as_ref(), &target);
        supervise(&mut instances, &mut balancer, &stop);
    }
    drop(balancer);
    instances.stop();
    println!("Stopped.");
    Ok(())
}

/// The instances' ports: `--base-port` and those after it, the old instances' last.
fn ports(args: &LaunchArgs) -> anyhow::Result<Vec<u16>> {
    (0..args.instances + args.legacy_instances)
        .map(|i| {
            args.base_port
                .checked_add(i)
                .context("--base-port + --instances + --legacy-instances is over 65535")
        })
        .collect()
}

fn cookie_key(args: &LaunchArgs) -> anyhow::Result<String> {
    Ok(match &args.common.cookie_key {
        Some(key) => {
            cookie_key::parse_cookie_key(key)?;
            key.clone()
        }
        None => {
            println!(
                "No --cookie-key given: generated one for this launch and shared it with every instance (sessions end when the demo stops)."
            );
            cookie_key::generate_cookie_key()
        }
    })
}

/// A channel that receives once per Ctrl-C or SIGTERM.
fn stop_signal() -> anyhow::Result<mpsc::Receiver<()>> {
    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(stop_rx)
}

/// nginx in front of the instances; when it cannot start, says why and goes on without it: the instances serve on their own ports all the same.
fn start_balancer(args: &LaunchArgs, ports: &[u16], secret: &str) -> Option<Balancer> {
    Balancer::start(args.balancer_port, ports, secret)
        .inspect_err(|err| {
            println!(
                "No load balancer: {err:#}. Going on without it: open the instances' own ports."
            );
        })
        .ok()
}

/// Waits until every instance's health check answers 200, saying so once when that takes
/// long (Redis accepts connections but the instances cannot use it yet).
fn wait_until_healthy(
    instances: &mut Instances,
    stop: &mpsc::Receiver<()>,
) -> anyhow::Result<Waited> {
    let started = Instant::now();
    let mut said = false;
    let ports: Vec<u16> = instances.pids().into_iter().map(|(port, _)| port).collect();
    let mut waiting = ports.as_slice();
    while let Some((&port, rest)) = waiting.split_first() {
        instances.check_started()?;
        if health_status(port) == Some(200) {
            waiting = rest;
            continue;
        }
        if !said && started.elapsed() > SLOW_STARTUP {
            println!(
                "Still waiting for the instance on port {port}: its /healthz is not 200 yet \
                 (Redis accepts connections but does not serve it: a password missing from \
                 the URL? still loading its data?)."
            );
            said = true;
        }
        if stop.recv_timeout(Duration::from_millis(100)).is_ok() {
            return Ok(Waited::Stopped);
        }
    }
    Ok(Waited::Ready)
}

/// The status code of `GET /healthz` on a local port, if it answers at all.
fn health_status(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn print_banner(instances: &Instances, balancer: Option<&Balancer>, target: &RedisTarget) {
    println!();
    if let Some(balancer) = balancer {
        println!(
            "Open http://127.0.0.1:{}/ — every refresh may come from another instance",
            balancer.port()
        );
    }
    let pids = instances.pids();
    let behind = if balancer.is_some() {
        " behind nginx"
    } else {
        ""
    };
    let count = match pids.len() {
        1 => "1 instance".to_owned(),
        n => format!("{n} instances"),
    };
    println!(
        "The demo is up: {count}{behind} sharing sessions through {}",
        target.describe()
    );
    for (port, pid) in pids {
        let pid = pid.map_or_else(|| "restarting".to_owned(), |pid| pid.to_string());
        println!("  http://127.0.0.1:{port}/  (pid {pid})");
    }
    if balancer.is_some() {
        println!(
            "Log in (alice / alice-password or bob / bob-password) and refresh: each page lists \
             the instances that served the last ones. Kill one (kill PID) and you stay signed \
             in; the launcher starts it again."
        );
    } else {
        println!(
            "Log in on one (alice / alice-password or bob / bob-password), then open another."
        );
    }
    println!("Press Ctrl-C to stop.");
    println!();
}

/// Keeps the instances running until Ctrl-C (or SIGTERM): a dead one is started again while
/// the others serve. A balancer that dies is reported and left out.
fn supervise(
    instances: &mut Instances,
    balancer: &mut Option<Balancer>,
    stop: &mpsc::Receiver<()>,
) {
    loop {
        if stop.recv_timeout(Duration::from_millis(200)).is_ok() {
            return;
        }
        instances.tend();
        if let Some(status) = balancer.as_mut().and_then(Balancer::exit_status) {
            println!(
                "nginx exited with {status}: no load balancer from here on; the instances' own \
                 ports still serve."
            );
            *balancer = None;
        }
    }
}

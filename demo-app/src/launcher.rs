//! The launcher: a private Redis (unless one is given), N instance processes, their output
//! prefixed with their port, and everything stopped again on Ctrl-C.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    cli::LaunchArgs,
    instance,
    redis_target::{Embedded, RedisTarget},
};

/// How long the instances may take to answer their health check after starting.
const STARTUP: Duration = Duration::from_secs(30);

/// How long instances get to stop on their own before they are killed.
const SHUTDOWN: Duration = Duration::from_secs(5);

/// One running instance.
struct Instance {
    port: u16,
    child: Child,
    /// Held open so the instance knows the launcher lives; closing it tells it to stop.
    stdin: Option<ChildStdin>,
}

/// Launches the demo and returns when it has been stopped.
///
/// # Errors
/// When Redis or an instance cannot be started.
pub fn run(args: LaunchArgs) -> anyhow::Result<()> {
    let ports: Vec<u16> = (0..args.instances)
        .map(|i| {
            args.base_port
                .checked_add(i)
                .context("--base-port + --instances is over 65535")
        })
        .collect::<anyhow::Result<_>>()?;

    let embedded;
    let target = match RedisTarget::from_args(&args.common)? {
        Some(target) => target,
        None => {
            embedded = Embedded::start(args.topology).context(
                "no --redis-url, --redis-cluster or --redis-sentinel given, and the private \
                 Redis could not be started (name a Redis you run with one of those)",
            )?;
            let target = embedded.target();
            println!(
                "Started a private Redis: {}; it stops with the demo.",
                target.describe()
            );
            target
        }
    };
    let cookie_key = match &args.common.cookie_key {
        Some(key) => {
            instance::parse_cookie_key(key)?;
            key.clone()
        }
        None => {
            println!(
                "No --cookie-key given: generated one for this launch and shared it with every instance (sessions end when the demo stops)."
            );
            instance::generate_cookie_key()
        }
    };

    let (stop_tx, stop_rx) = mpsc::channel();
    let ctrlc_tx = stop_tx.clone();
    ctrlc::set_handler(move || {
        let _ = ctrlc_tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;

    let mut instances = Vec::new();
    for &port in &ports {
        match spawn_instance(port, &ports, &target, &cookie_key, &args) {
            Ok(instance) => instances.push(instance),
            Err(err) => {
                stop(&mut instances);
                return Err(err);
            }
        }
    }
    if let Err(err) = wait_until_ready(&mut instances) {
        stop(&mut instances);
        return Err(err);
    }
    print_banner(&instances, &target);

    let outcome = supervise(&mut instances, &stop_rx);
    stop(&mut instances);
    println!("Stopped.");
    outcome
}

fn spawn_instance(
    port: u16,
    ports: &[u16],
    target: &RedisTarget,
    cookie_key: &str,
    args: &LaunchArgs,
) -> anyhow::Result<Instance> {
    let exe = std::env::current_exe().context("cannot find the demo-app binary")?;
    let peers = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut command = Command::new(exe);
    command
        .args(["serve", "--exit-with-parent", "--port", &port.to_string()])
        .env("DEMO_COOKIE_KEY", cookie_key)
        .env("DEMO_PEERS", peers)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(accounts) = &args.common.accounts {
        command.arg("--accounts").arg(accounts);
    }
    if !args.secure_cookies {
        command.arg("--plain-http");
    }
    if args.common.anonymous_when_redis_down {
        command.arg("--anonymous-when-redis-down");
    }
    if let Some(threads) = args.common.hash_threads {
        command.arg("--hash-threads").arg(threads.to_string());
    }
    if let Some(queue) = args.common.login_queue {
        command.arg("--login-queue").arg(queue.to_string());
    }
    target.pass_to(&mut command);
    if let Some(replicas) = args.common.wait_replicas {
        command.arg("--wait-replicas").arg(replicas.to_string());
    }
    let mut child = command.spawn().context("cannot start an instance")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    thread::spawn(move || prefix_lines(port, stdout, false));
    thread::spawn(move || prefix_lines(port, stderr, true));
    let stdin = child.stdin.take();
    Ok(Instance { port, child, stdin })
}

/// Copies an instance's output line by line, each line prefixed with its port.
fn prefix_lines(port: u16, output: impl std::io::Read, to_stderr: bool) {
    for line in BufReader::new(output).lines() {
        let Ok(line) = line else { return };
        if to_stderr {
            eprintln!("[{port}] {line}");
        } else {
            println!("[{port}] {line}");
        }
    }
}

fn wait_until_ready(instances: &mut [Instance]) -> anyhow::Result<()> {
    let deadline = Instant::now() + STARTUP;
    for instance in instances {
        loop {
            if let Some(status) = instance.child.try_wait()? {
                bail!(
                    "the instance on port {} exited with {status} (is the port free?)",
                    instance.port
                );
            }
            if health_status(instance.port) == Some(200) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the instance on port {} did not become healthy within {STARTUP:?}",
                    instance.port
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
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

fn print_banner(instances: &[Instance], target: &RedisTarget) {
    println!();
    println!(
        "The demo is up: {} instances sharing sessions through {}",
        instances.len(),
        target.describe()
    );
    for instance in instances {
        println!(
            "  http://127.0.0.1:{}/  (pid {})",
            instance.port,
            instance.child.id()
        );
    }
    println!("Log in on one (alice / alice-password or bob / bob-password), then open another.");
    println!("Press Ctrl-C to stop.");
    println!();
}

/// Waits for Ctrl-C (or SIGTERM), or for an instance to die.
fn supervise(instances: &mut [Instance], stop: &mpsc::Receiver<()>) -> anyhow::Result<()> {
    loop {
        if stop.recv_timeout(Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        for instance in instances.iter_mut() {
            if let Some(status) = instance.child.try_wait()? {
                bail!(
                    "the instance on port {} exited with {status}; stopping the others",
                    instance.port
                );
            }
        }
    }
}

/// Asks every instance to stop (by closing its stdin), then kills those that do not.
fn stop(instances: &mut [Instance]) {
    for instance in instances.iter_mut() {
        instance.stdin.take();
    }
    let deadline = Instant::now() + SHUTDOWN;
    for instance in instances.iter_mut() {
        while matches!(instance.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let _ = instance.child.kill();
        let _ = instance.child.wait();
    }
}

//! The launcher when things go wrong around it: killed outright, or its output never read.

use std::{
    collections::BTreeSet,
    io::{Read as _, Seek as _},
    net::TcpStream,
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use integration_tests::{
    RedisServer,
    demo::{ApiClient, Demo, binary},
    prometheus::Exposition,
};
use nix::{sys::signal, unistd::Pid};

/// `kill -9` of the launcher gives it no chance to stop anything: its instances, nginx and
/// Redis still end within 2 s, their ports are free, and a launcher on the same ports comes
/// up at once.
#[test]
fn a_launcher_killed_outright_takes_everything_with_it() {
    let demo = Demo::launch_with_balancer(2, &[]);
    let launcher = demo.launcher_pid();
    let family = descendants(launcher);
    let names: BTreeSet<String> = family.iter().map(|&pid| name(pid)).collect();
    for wanted in ["demo-app", "nginx", "redis-server"] {
        assert!(names.contains(wanted), "no {wanted} among {names:?}");
    }
    let mut ports = demo.ports().to_vec();
    ports.extend(demo.balancer_port());

    signal::kill(pid(launcher), signal::Signal::SIGKILL).expect("the launcher is killed");
    let killed = Instant::now();
    while family.iter().any(|&pid| alive(pid)) && killed.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(20));
    }
    let gone = killed.elapsed();
    let left: Vec<String> = family
        .iter()
        .filter(|&&pid| alive(pid))
        .map(|&pid| format!("{pid} {}", name(pid)))
        .collect();
    println!(
        "{} processes gone {gone:?} after the launcher's kill",
        family.len()
    );
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(gone <= Duration::from_secs(2), "{gone:?}");
    for port in &ports {
        assert!(
            TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "port {port} still taken"
        );
    }

    let (base, balancer) = (ports[0], ports[2]);
    let again = launch_on(base, balancer, &[]);
    let up = answers_within(balancer, Duration::from_secs(30));
    let printed = again.stop();
    assert!(
        up,
        "a launcher on the same ports did not come up within 30 s:\n{printed}"
    );
}

/// nginx's config names files in the launcher's temporary folder: a `TMPDIR` with a space, a
/// `;` and a quote in it is still one path there.
#[test]
fn an_odd_temporary_folder_does_not_break_the_balancer() {
    let odd = tempfile::Builder::new()
        .prefix("odd dir;\"x")
        .tempdir()
        .expect("a temporary folder");
    let tmpdir = odd.path().to_str().expect("a UTF-8 path").to_owned();
    let base = local_redis::free_ports(2).expect("free ports");
    let balancer = local_redis::free_port().expect("a free port");
    let launcher = launch_on(base, balancer, &[("TMPDIR", &tmpdir)]);
    let up = answers_within(balancer, Duration::from_secs(30));
    let printed = launcher.stop();
    assert!(up, "no balancer with TMPDIR={tmpdir:?}:\n{printed}");
}

/// A Ctrl-C at the terminal signals the launcher's whole process group: the instances stop
/// before their private Redis, so none of them sees its Redis go first and warns that its
/// near cache's link is down, and nothing is left running.
#[test]
fn a_ctrl_c_at_the_terminal_stops_the_instances_before_their_redis() {
    let base = local_redis::free_ports(2).expect("free ports");
    let balancer = local_redis::free_port().expect("a free port");
    let launcher = launch_on(base, balancer, &[]);
    let up = answers_within(balancer, Duration::from_secs(30));
    let family = descendants(launcher.child.id());
    let printed = launcher.ctrl_c();
    assert!(up, "the demo did not come up:\n{printed}");
    assert!(printed.contains("Stopped."), "{printed}");
    assert!(
        !printed.contains("link down"),
        "an instance saw its Redis stop first:\n{printed}"
    );
    // The watchdog, in a process group of its own, ends once the launcher's pipe closes.
    let stopped = Instant::now();
    while family.iter().any(|&pid| alive(pid)) && stopped.elapsed() < Duration::from_secs(2) {
        thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<String> = family
        .iter()
        .filter(|&&pid| alive(pid))
        .map(|&pid| format!("{pid} {}", name(pid)))
        .collect();
    assert!(
        left.is_empty(),
        "left running 2 s after the launcher: {left:?}\n{printed}"
    );
}

/// A launcher of one instance on `base`, behind a balancer on `balancer`, with `env`, in a
/// process group of its own as a shell runs a command; its output goes to a file, for the
/// failure message.
fn launch_on(base: u16, balancer: u16, env: &[(&str, &str)]) -> Launched {
    let output = tempfile::tempfile().expect("a file for the output");
    let child = Command::new(binary())
        .process_group(0)
        .args(["--instances", "1", "--base-port", &base.to_string()])
        .args(["--balancer-port", &balancer.to_string()])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("the output file"))
        .stderr(output.try_clone().expect("the output file"))
        .spawn()
        .expect("the launcher starts");
    Launched { child, output }
}

/// A launcher started by [`launch_on`].
struct Launched {
    child: std::process::Child,
    output: std::fs::File,
}

impl Launched {
    /// Stops it with a SIGINT of its own, waits for it and returns what it printed.
    fn stop(self) -> String {
        signal::kill(pid(self.child.id()), signal::Signal::SIGINT).expect("stopped");
        self.printed()
    }

    /// Stops it as a Ctrl-C at the terminal does, with a SIGINT to its whole process group,
    /// waits for it and returns what it printed.
    fn ctrl_c(self) -> String {
        signal::killpg(pid(self.child.id()), signal::Signal::SIGINT).expect("stopped");
        self.printed()
    }

    /// Waits for it to exit and returns what it printed.
    fn printed(mut self) -> String {
        self.child.wait().expect("the launcher exits");
        let mut printed = String::new();
        self.output.rewind().expect("the output file");
        self.output
            .read_to_string(&mut printed)
            .expect("the output file");
        printed
    }
}

/// Whether the balancer on `port` answers a health check with `200` within `limit`.
fn answers_within(port: u16, limit: Duration) -> bool {
    let api = ApiClient::default();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let started = Instant::now();
    while started.elapsed() < limit {
        if api
            .try_send("GET", &url, None, None::<()>)
            .is_ok_and(|answer| answer.status == 200)
        {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A launcher whose output nobody reads (piped into a pager that is not scrolled, say) soon
/// blocks on its writes; its instances go on serving, dropping log lines instead, and say how
/// many they dropped.
#[test]
fn a_launcher_whose_output_is_never_read_keeps_its_instances_serving() {
    const FOR: Duration = Duration::from_secs(12);
    let redis = RedisServer::start();
    let base = local_redis::free_ports(2).expect("free ports");
    let mut launcher = Command::new(binary())
        .args(["--instances", "2", "--base-port", &base.to_string()])
        .args(["--no-balancer", "--redis-url", &redis.url()])
        .stdin(Stdio::null())
        // Never read: once the pipes are full, every write of the launcher blocks.
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the launcher starts");
    let api = ApiClient::default();
    let health = |port: u16| {
        api.try_send(
            "GET",
            &format!("http://127.0.0.1:{port}/healthz"),
            None,
            None::<()>,
        )
        .map(|answer| answer.status)
    };
    let started = Instant::now();
    while [base, base + 1]
        .iter()
        .any(|&port| health(port).ok() != Some(200))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the instances never came up"
        );
        thread::sleep(Duration::from_millis(100));
    }

    let started = Instant::now();
    let (mut answered, mut slowest) = (0_u64, Duration::ZERO);
    while started.elapsed() < FOR {
        for port in [base, base + 1] {
            let sent = Instant::now();
            let status = health(port);
            slowest = slowest.max(sent.elapsed());
            assert_eq!(
                status.ok(),
                Some(200),
                "instance :{port} after {:?}",
                started.elapsed()
            );
            answered += 1;
        }
    }
    let dropped: Vec<f64> = [base, base + 1]
        .iter()
        .map(|port| {
            let metrics = api.send(
                "GET",
                &format!("http://127.0.0.1:{port}/metrics"),
                None,
                None::<()>,
            );
            Exposition::parse(&metrics.text)
                .expect("a Prometheus exposition")
                .sum("demo_log_lines_dropped_total", &[])
        })
        .collect();
    signal::kill(pid(launcher.id()), signal::Signal::SIGKILL).expect("killed");
    let _ = launcher.wait();
    println!(
        "{answered} health checks in {FOR:?}, slowest {slowest:?}; log lines dropped: {dropped:?}"
    );
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    assert!(
        dropped.iter().all(|&count| count > 0.0),
        "the output never stalled, so this proved nothing: {dropped:?}"
    );
}

fn pid(raw: u32) -> Pid {
    Pid::from_raw(i32::try_from(raw).expect("a pid"))
}

/// Every process descended from `root`, by `/proc`'s parent links.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?.1)))
        .collect();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        next += 1;
    }
    found.remove(0);
    found
}

/// A process's state letter and parent, from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

fn name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

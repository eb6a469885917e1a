//! The instance processes: started, watched, started again when one dies, and stopped.

use std::{
    ffi::OsString,
    path::PathBuf,
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::output::prefix_lines;
use crate::{
    cli::{LaunchArgs, LegacyStepArg},
    redis_target::RedisTarget,
};

/// How long a dead instance waits before it is started again: long enough that the balancer
/// has noticed and a person sees the gap, short enough that it is soon back.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// An instance that dies again sooner than this after a restart waits twice as long as last
/// time before the next, so one that cannot start (its port taken, say) does not spin.
const SHORT_LIFE: Duration = Duration::from_secs(10);

/// The longest wait before a restart.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// How long instances get to stop on their own before they are killed.
const SHUTDOWN: Duration = Duration::from_secs(5);

/// How to start an instance: everything but its port.
pub(super) struct Recipe {
    exe: PathBuf,
    peers: String,
    cookie_key: String,
    /// The balancer's secret and port, when there is a balancer.
    balancer: Option<(String, u16)>,
    target: RedisTarget,
    args: Vec<OsString>,
    /// The first old instance's port (`--legacy-instances`), if any.
    first_legacy: Option<u16>,
}

impl Recipe {
    /// The instances of this launch: `ports`, on `target`, sharing `cookie_key`, behind a
    /// balancer that proves itself with `balancer_secret`, when there is one.
    pub(super) fn new(
        launch: &LaunchArgs,
        ports: &[u16],
        target: RedisTarget,
        cookie_key: String,
        balancer_secret: Option<String>,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the demo-app binary")?;
        let peers = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        Ok(Self {
            exe,
            peers,
            cookie_key,
            balancer: balancer_secret.map(|secret| (secret, launch.balancer_port)),
            target,
            args: instance_args(launch),
            first_legacy: (launch.legacy_instances > 0)
                .then(|| ports.get(usize::from(launch.instances)).copied())
                .flatten(),
        })
    }

    fn spawn(&self, port: u16) -> anyhow::Result<(Child, Option<ChildStdin>)> {
        let mut command = Command::new(&self.exe);
        command
            .args(["serve", "--exit-with-parent", "--port", &port.to_string()])
            .args(&self.args)
            .args(
                self.first_legacy
                    .filter(|first| port >= *first)
                    .map(|_| "--legacy-store"),
            )
            .env("DEMO_COOKIE_KEY", &self.cookie_key)
            .env("DEMO_PEERS", &self.peers)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((secret, port)) = &self.balancer {
            command
                .env("DEMO_BALANCER_SECRET", secret)
                .env("DEMO_BALANCER_PORT", port.to_string());
        }
        self.target.pass_to(&mut command);
        // `RUST_BACKTRACE=1` (set in many shells and containers) makes every error that the
        // session middleware wraps capture a backtrace, on every failed request: CPU spent
        // exactly when Redis is down. `RUST_LIB_BACKTRACE=0` keeps panics' backtraces and
        // drops errors'; whoever sets it otherwise keeps their choice.
        if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
            command.env("RUST_LIB_BACKTRACE", "0");
        }
        let mut child = command.spawn().context("cannot start an instance")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        prefix_lines(port.to_string(), stdout, false);
        prefix_lines(port.to_string(), stderr, true);
        let stdin = child.stdin.take();
        Ok((child, stdin))
    }
}

/// The `serve` flags that carry the launcher's settings to an instance.
fn instance_args(launch: &LaunchArgs) -> Vec<OsString> {
    let common = &launch.common;
    let mut args: Vec<OsString> = Vec::new();
    let mut flag = |name: &str, value: Option<OsString>| {
        args.push(name.into());
        args.extend(value);
    };
    if let Some(accounts) = &common.accounts {
        flag("--accounts", Some(accounts.into()));
    }
    if !launch.secure_cookies {
        flag("--plain-http", None);
    }
    if common.anonymous_when_redis_down {
        flag("--anonymous-when-redis-down", None);
    }
    flag(
        "--max-sessions-per-user",
        Some(common.max_sessions_per_user.to_string().into()),
    );
    if !common.previous_cookie_keys.is_empty() {
        flag(
            "--previous-cookie-keys",
            Some(common.previous_cookie_keys.join(",").into()),
        );
    }
    let step = common.legacy_sessions.or(
        // New instances beside old ones serve the old ones' sessions, and theirs to them.
        (launch.legacy_instances > 0).then_some(LegacyStepArg::Interoperate),
    );
    if let Some(step) = step {
        flag("--legacy-sessions", Some(step.name().into()));
    }
    if let Some(seconds) = common.idle_timeout {
        flag("--idle-timeout", Some(seconds.to_string().into()));
    }
    flag("--near-cache", Some(common.near_cache.to_string().into()));
    if let Some(threads) = common.hash_threads {
        flag("--hash-threads", Some(threads.to_string().into()));
    }
    if let Some(queue) = common.login_queue {
        flag("--login-queue", Some(queue.to_string().into()));
    }
    if let Some(replicas) = common.wait_replicas {
        flag("--wait-replicas", Some(replicas.to_string().into()));
    }
    flag(
        "--max-streams-per-session",
        Some(common.max_streams_per_session.to_string().into()),
    );
    flag(
        "--max-failed-logins",
        Some(common.max_failed_logins.to_string().into()),
    );
    flag(
        "--max-failed-logins-per-address",
        Some(common.max_failed_logins_per_address.to_string().into()),
    );
    flag(
        "--failed-login-window",
        Some(common.failed_login_window.to_string().into()),
    );
    args
}

/// One instance, running or waiting to be started again.
struct Instance {
    port: u16,
    state: State,
    /// How long the next restart waits.
    delay: Duration,
}

enum State {
    Running {
        child: Child,
        /// Held open so the instance knows the launcher lives; closing it tells it to stop.
        stdin: Option<ChildStdin>,
        since: Instant,
        /// Whether this is a restart rather than the launch's first start.
        restarted: bool,
    },
    Dead {
        restart_at: Instant,
    },
}

/// The launch's instances. Dropping it stops them.
pub(super) struct Instances {
    recipe: Recipe,
    instances: Vec<Instance>,
}

impl Instances {
    /// Starts one instance per port.
    ///
    /// # Errors
    /// When one cannot be started (those already started are stopped).
    pub(super) fn start(recipe: Recipe, ports: &[u16]) -> anyhow::Result<Self> {
        let mut instances = Self {
            recipe,
            instances: Vec::new(),
        };
        for &port in ports {
            let (child, stdin) = instances.recipe.spawn(port)?;
            instances.instances.push(Instance {
                port,
                state: State::Running {
                    child,
                    stdin,
                    since: Instant::now(),
                    restarted: false,
                },
                delay: RESTART_DELAY,
            });
        }
        Ok(instances)
    }

    /// The instances' ports, and the process id of each that runs.
    pub(super) fn pids(&self) -> Vec<(u16, Option<u32>)> {
        self.instances
            .iter()
            .map(|instance| (instance.port, instance.pid()))
            .collect()
    }

    /// At start-up, where an instance that exits is misconfigured rather than unlucky (its
    /// port taken, say): fails when one has exited.
    ///
    /// # Errors
    /// Naming the instance that exited.
    pub(super) fn check_started(&mut self) -> anyhow::Result<()> {
        for instance in &mut self.instances {
            if let Some(status) = instance.exit_status()? {
                bail!(
                    "the instance on port {} exited with {status} (is the port free?)",
                    instance.port
                );
            }
        }
        Ok(())
    }

    /// Reports the instances that died since the last call and starts again those whose
    /// wait is over. The others serve on meanwhile.
    pub(super) fn tend(&mut self) {
        for instance in &mut self.instances {
            instance.tend(&self.recipe);
        }
    }

    /// Asks every instance to stop (by closing its stdin), then kills those that do not.
    pub(super) fn stop(&mut self) {
        for instance in &mut self.instances {
            if let State::Running { stdin, .. } = &mut instance.state {
                stdin.take();
            }
        }
        let deadline = Instant::now() + SHUTDOWN;
        for instance in &mut self.instances {
            if let State::Running { child, .. } = &mut instance.state {
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.instances.clear();
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Instance {
    fn pid(&self) -> Option<u32> {
        match &self.state {
            State::Running { child, .. } => Some(child.id()),
            State::Dead { .. } => None,
        }
    }

    /// How the process ended, if it has.
    fn exit_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match &mut self.state {
            State::Running { child, .. } => Ok(child.try_wait()?),
            State::Dead { .. } => Ok(None),
        }
    }

    fn tend(&mut self, recipe: &Recipe) {
        match &mut self.state {
            State::Running {
                child,
                since,
                restarted,
                ..
            } => {
                let status = match child.try_wait() {
                    Ok(None) => return,
                    Ok(Some(status)) => status.to_string(),
                    Err(err) => format!("an unknown status ({err})"),
                };
                self.delay = if *restarted && since.elapsed() < SHORT_LIFE {
                    (self.delay * 2).min(MAX_RESTART_DELAY)
                } else {
                    RESTART_DELAY
                };
                println!(
                    "The instance on port {} exited with {status}; starting it again in {} s. \
                     The others serve meanwhile.",
                    self.port,
                    self.delay.as_secs()
                );
                self.state = State::Dead {
                    restart_at: Instant::now() + self.delay,
                };
            }
            State::Dead { restart_at } if Instant::now() >= *restart_at => self.restart(recipe),
            State::Dead { .. } => {}
        }
    }

    fn restart(&mut self, recipe: &Recipe) {
        match recipe.spawn(self.port) {
            Ok((child, stdin)) => {
                // The same shape as the banner's lines, so whoever reads them learns the new
                // pid the same way.
                println!(
                    "Started the instance on port {port} again: http://127.0.0.1:{port}/  (pid {})",
                    child.id(),
                    port = self.port
                );
                self.state = State::Running {
                    child,
                    stdin,
                    since: Instant::now(),
                    restarted: true,
                };
            }
            Err(err) => {
                self.delay = (self.delay * 2).min(MAX_RESTART_DELAY);
                println!(
                    "The instance on port {} did not start ({err:#}); trying again in {} s.",
                    self.port,
                    self.delay.as_secs()
                );
                self.state = State::Dead {
                    restart_at: Instant::now() + self.delay,
                };
            }
        }
    }
}

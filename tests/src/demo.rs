//! The real `demo-app` binary, launched as a user would launch it.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

use actix_web::cookie::Cookie;
use nix::{sys::signal, unistd::Pid};
use serde::Serialize;

/// How long the launcher may take to print that the demo is up.
const STARTUP: Duration = Duration::from_secs(60);

/// The path of a `demo-app` binary built from the current sources.
///
/// Cargo builds a package's binaries only for that package's own integration tests, so this
/// runs `cargo build -p demo-app` once per test process (quick when nothing changed).
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let output = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "-p",
                    "demo-app",
                    "--bin",
                    "demo-app",
                    "--message-format=json",
                ])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .env_clear()
                .envs(std::env::vars_os().filter(|(name, _)| !set_for_this_test(name)))
                .stderr(Stdio::inherit())
                .output()
                .expect("cargo runs");
            assert!(output.status.success(), "cargo build -p demo-app failed");
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find_map(|message| message["executable"].as_str().map(PathBuf::from))
                .expect("cargo reported the demo-app executable")
        })
        .clone()
}

/// Whether Cargo set the environment variable `name` for this test binary (`CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`, ...). The build of the demo must not inherit them: build scripts that
/// rerun when one changes (ring's does) would be rebuilt, with all that depends on them, at
/// every switch between this build and the test's own.
fn set_for_this_test(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || [
            "CARGO_CRATE_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "OUT_DIR",
        ]
        .contains(&name.as_ref())
}

/// A running demo launcher and its instances; stopped like Ctrl-C would stop it on drop.
pub struct Demo {
    child: Child,
    ports: Vec<u16>,
    balancer: Option<u16>,
    output: Arc<Mutex<Vec<String>>>,
}

impl Demo {
    /// Launches `instances` instances on free consecutive ports, with `extra_args` (e.g.
    /// `["--redis-url", url]`), and waits until the launcher says they are up. No load
    /// balancer: tests running side by side would fight over its port.
    pub fn launch(instances: u16, extra_args: &[&str]) -> Self {
        Self::launch_until_up(instances, extra_args, false, &[])
    }

    /// Like [`launch`](Self::launch), on `redis` (`--redis-url`).
    pub fn launch_on(redis: &crate::RedisServer, instances: u16, extra_args: &[&str]) -> Self {
        let url = redis.url();
        let mut args = vec!["--redis-url", url.as_str()];
        args.extend_from_slice(extra_args);
        Self::launch(instances, &args)
    }

    /// Like [`launch`](Self::launch), with the environment variables `env` set for the
    /// launcher and its instances (`RUST_BACKTRACE=1`, say).
    pub fn launch_with_env(instances: u16, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::launch_until_up(instances, extra_args, false, env)
    }

    /// Like [`launch`](Self::launch), with the launcher's load balancer (nginx) on a free
    /// port in front of the instances; panics, with the launcher's reason, when it has none.
    pub fn launch_with_balancer(instances: u16, extra_args: &[&str]) -> Self {
        Self::launch_until_up(instances, extra_args, true, &[])
    }

    fn launch_until_up(
        instances: u16,
        extra_args: &[&str],
        balancer: bool,
        env: &[(&str, &str)],
    ) -> Self {
        // The ports can be taken between our probe and the instances (or nginx) binding them:
        // retry.
        let mut failure = String::new();
        for _ in 0..3 {
            let mut demo = Self::spawn_with_env(instances, extra_args, balancer, env);
            match demo.wait_until_up() {
                Ok(()) if demo.balancer.is_none() || demo.has_balancer() => return demo,
                Ok(()) => failure = format!("no load balancer:\n{}", demo.output().join("\n")),
                Err(output) => failure = output,
            }
        }
        panic!("demo-app did not come up:\n{failure}");
    }

    /// Starts the launcher without waiting for anything: `instances` instances on free
    /// consecutive ports, a balancer on a free port when `balancer`, and `extra_args`.
    pub fn spawn(instances: u16, extra_args: &[&str], balancer: bool) -> Self {
        Self::spawn_with_env(instances, extra_args, balancer, &[])
    }

    fn spawn_with_env(
        instances: u16,
        extra_args: &[&str],
        balancer: bool,
        env: &[(&str, &str)],
    ) -> Self {
        let base = local_redis::free_ports(instances).expect("free ports");
        let balancer = balancer.then(|| local_redis::free_port().expect("a free port"));
        let balancer_args = match balancer {
            Some(port) => ["--balancer-port".to_owned(), port.to_string()].to_vec(),
            None => ["--no-balancer".to_owned()].to_vec(),
        };
        let mut child = Command::new(binary())
            .args([
                "--instances",
                &instances.to_string(),
                "--base-port",
                &base.to_string(),
            ])
            .args(balancer_args)
            .args(extra_args)
            .env_remove("REDIS_URL")
            .env_remove("DEMO_COOKIE_KEY")
            .env_remove("DEMO_BALANCER_PORT")
            .env_remove("DEMO_NO_BALANCER")
            // Instances without the launcher's balancer take the test's secret, so that a
            // test can speak as a balancer does (`ApiClient::forwarding_for`); with one, the
            // launcher gives them the balancer's own.
            .env("DEMO_BALANCER_SECRET", BALANCER_SECRET)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the demo-app binary runs");
        let output = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("piped"), &output);
        collect(child.stderr.take().expect("piped"), &output);
        // From here on, dropping the demo stops the launcher, whatever happens.
        Self {
            child,
            ports: (base..base + instances).collect(),
            balancer,
            output,
        }
    }

    /// Waits until the launcher says the demo is up; its output when it exits first.
    ///
    /// # Errors
    /// The launcher's output, when it exited before the demo was up.
    pub fn wait_until_up(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if self.line_starting("The demo is up").is_some() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "it exited with {status}:\n{}",
                    self.output().join("\n")
                ));
            }
            assert!(
                Instant::now() < deadline,
                "demo-app did not come up within {STARTUP:?}:\n{}",
                self.output().join("\n")
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first line of the launcher's output that starts with `prefix`, if there is one yet.
    pub fn line_starting(&self, prefix: &str) -> Option<String> {
        self.output()
            .into_iter()
            .find(|line| line.starts_with(prefix))
    }

    /// Waits up to `timeout` for a line of the launcher's output that contains `text`.
    pub fn wait_for_line(&self, text: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.output().into_iter().find(|line| line.contains(text));
            if line.is_some() || Instant::now() > deadline {
                return line;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn has_balancer(&self) -> bool {
        let Some(port) = self.balancer else {
            return false;
        };
        let open = format!("Open http://127.0.0.1:{port}/");
        self.output().iter().any(|line| line.starts_with(&open))
    }

    /// The instances' ports, in order.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// `http://127.0.0.1:{port}{path}` for instance `index`.
    pub fn url(&self, index: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[index])
    }

    /// `http://127.0.0.1:{port}{path}` on the load balancer; panics for a demo launched
    /// without one.
    pub fn balancer_url(&self, path: &str) -> String {
        let port = self
            .balancer
            .expect("a demo launched with launch_with_balancer");
        format!("http://127.0.0.1:{port}{path}")
    }

    /// The launcher's process id.
    pub fn launcher_pid(&self) -> u32 {
        self.child.id()
    }

    /// The balancer's port, when the demo has one.
    pub fn balancer_port(&self) -> Option<u16> {
        self.balancer
    }

    /// The process id of instance `index`: the latest the launcher printed, in its banner or
    /// when it started the instance again.
    pub fn pid(&self, index: usize) -> u32 {
        // The banner's lines can trail the line the launch waited for by a moment.
        self.wait_for_pid(index, Duration::from_secs(5), |_| true)
    }

    /// Waits until the launcher has started instance `index` again after `old_pid` died, and
    /// returns the new process id.
    pub fn restarted_pid(&self, index: usize, old_pid: u32, timeout: Duration) -> u32 {
        self.wait_for_pid(index, timeout, |pid| pid != old_pid)
    }

    fn wait_for_pid(&self, index: usize, timeout: Duration, wanted: impl Fn(u32) -> bool) -> u32 {
        let address = format!("{}  (pid ", self.url(index, "/"));
        let deadline = Instant::now() + timeout;
        loop {
            let pid = self.output().iter().rev().find_map(|line| {
                let (_, rest) = line.split_once(&address)?;
                rest.strip_suffix(')')?.parse().ok()
            });
            if let Some(pid) = pid.filter(|&pid| wanted(pid)) {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "no (new) pid for instance {index} within {timeout:?}:\n{}",
                self.output().join("\n")
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the launcher printed so far.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().expect("lock").clone()
    }

    /// Stops the launcher as Ctrl-C would and returns its exit status and output.
    pub fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = self.terminate();
        (status, self.output())
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = signal::kill(
            Pid::from_raw(self.child.id() as i32),
            signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().expect("the launcher is reaped")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// Collects output lines.
fn collect(stream: impl std::io::Read + Send + 'static, sink: &Arc<Mutex<Vec<String>>>) {
    let sink = Arc::clone(sink);
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            sink.lock().expect("lock").push(line);
        }
    });
}

/// The balancer secret of instances launched without a balancer (see
/// [`ApiClient::forwarding_for`]).
pub const BALANCER_SECRET: &str = "the-tests-balancer-secret";

/// A plain HTTP client for the demo's JSON API that keeps cookies by hand, so a test can send
/// any cookie to any instance.
pub struct ApiClient {
    agent: ureq::Agent,
    /// Headers sent with every request.
    headers: Vec<(String, String)>,
}

/// A response: status, the session cookie it set (if any) and its JSON body.
pub struct ApiResponse {
    /// The HTTP status.
    pub status: u16,
    /// The session cookie (`session` or `__Host-session`) the response set or cleared.
    pub cookie: Option<Cookie<'static>>,
    /// Every cookie the response set or cleared, the session's included.
    pub cookies: Vec<Cookie<'static>>,
    /// The body as JSON (`null` when it was not JSON).
    pub json: serde_json::Value,
    /// The body as text (an HTML page, say).
    pub text: String,
    /// The response headers, by lowercase name (the last value of a repeated header).
    pub headers: std::collections::HashMap<String, String>,
}

impl Default for ApiClient {
    fn default() -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect is an answer to look at (a login's 303, say), not to follow.
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Self {
            agent,
            headers: Vec::new(),
        }
    }
}

impl ApiClient {
    /// The same client, sending `name: value` with every request: a `User-Agent` of its own,
    /// say.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The same client, speaking as the balancer of a demo launched without one: it names
    /// `address` as the client in `X-Forwarded-For` and proves itself with the test's
    /// balancer secret, so that the instances count its logins under `address`.
    pub fn forwarding_for(self, address: &str) -> Self {
        self.with_header("x-forwarded-for", address)
            .with_header("x-demo-balancer", BALANCER_SECRET)
    }

    /// Sends `method url` with an optional cookie and JSON body; panics when no HTTP answer
    /// comes.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        cookie: Option<&Cookie<'_>>,
        body: Option<impl Serialize>,
    ) -> ApiResponse {
        self.try_send(method, url, cookie, body)
            .unwrap_or_else(|err| panic!("{method} {url}: {err}"))
    }

    /// [`send`](Self::send) without a body: `method` on `path` of instance `index` of `demo`.
    pub fn call(
        &self,
        method: &str,
        demo: &Demo,
        index: usize,
        path: &str,
        cookie: Option<&Cookie<'_>>,
    ) -> ApiResponse {
        self.send(method, &demo.url(index, path), cookie, None::<()>)
    }

    /// `POST /api/login` of `user` with `password` on instance `index` of `demo`, without a
    /// cookie.
    pub fn log_in(&self, demo: &Demo, index: usize, user: &str, password: &str) -> ApiResponse {
        let credentials = serde_json::json!({"username": user, "password": password});
        self.send(
            "POST",
            &demo.url(index, "/api/login"),
            None,
            Some(credentials),
        )
    }

    /// `PUT /api/profile` of `display_name` on instance `index` of `demo` with `cookie`.
    pub fn set_display_name(
        &self,
        demo: &Demo,
        index: usize,
        cookie: &Cookie<'_>,
        display_name: &str,
    ) -> ApiResponse {
        let profile = serde_json::json!({"display_name": display_name});
        self.send(
            "PUT",
            &demo.url(index, "/api/profile"),
            Some(cookie),
            Some(profile),
        )
    }

    /// The same as [`send`](Self::send), with a failure to get an HTTP answer as an error.
    ///
    /// # Errors
    /// When the connection fails or no answer comes within ten seconds.
    pub fn try_send(
        &self,
        method: &str,
        url: &str,
        cookie: Option<&Cookie<'_>>,
        body: Option<impl Serialize>,
    ) -> Result<ApiResponse, ureq::Error> {
        let cookies: Vec<_> = cookie.into_iter().collect();
        let body = body.map(|body| {
            (
                "application/json",
                serde_json::to_vec(&body).expect("serialisable"),
            )
        });
        self.exchange(method, url, &cookies, body)
    }

    /// `GET url` with `cookies`, as a browser would load a page; panics when no HTTP answer
    /// comes.
    pub fn get_page(&self, url: &str, cookies: &[&Cookie<'_>]) -> ApiResponse {
        self.exchange("GET", url, cookies, None)
            .unwrap_or_else(|err| panic!("GET {url}: {err}"))
    }

    /// `POST url` of an HTML form's `fields` with `cookies`, as a browser would submit it;
    /// panics when no HTTP answer comes.
    pub fn post_form(
        &self,
        url: &str,
        cookies: &[&Cookie<'_>],
        fields: &[(&str, &str)],
    ) -> ApiResponse {
        let body = fields
            .iter()
            .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let body = ("application/x-www-form-urlencoded", body.into_bytes());
        self.exchange("POST", url, cookies, Some(body))
            .unwrap_or_else(|err| panic!("POST {url}: {err}"))
    }

    fn exchange(
        &self,
        method: &str,
        url: &str,
        cookies: &[&Cookie<'_>],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<ApiResponse, ureq::Error> {
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if !cookies.is_empty() {
            let header = cookies
                .iter()
                .map(|cookie| format!("{}={}", cookie.name(), cookie.value()))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header("cookie", header);
        }
        let response = match body {
            Some((content_type, body)) => self.agent.run(
                request
                    .header("content-type", content_type)
                    .body(body)
                    .expect("a valid request"),
            ),
            None => self.agent.run(request.body(()).expect("a valid request")),
        };
        let mut response = response?;
        let cookies: Vec<_> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| Cookie::parse(value.to_str().ok()?.to_owned()).ok())
            .collect();
        let cookie = cookies
            .iter()
            .find(|cookie| {
                [
                    demo_app::instance::SESSION_COOKIE,
                    demo_app::instance::SECURE_SESSION_COOKIE,
                ]
                .contains(&cookie.name())
            })
            .cloned();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Ok(ApiResponse {
            status,
            cookie,
            cookies,
            json,
            text,
            headers,
        })
    }
}

impl std::fmt::Debug for ApiResponse {
    /// Every field, with only the start of a long body.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: String = self.text.chars().take(300).collect();
        f.debug_struct("ApiResponse")
            .field("status", &self.status)
            .field("cookies", &self.cookies)
            .field("headers", &self.headers)
            .field("json", &self.json)
            .field("text", &text)
            .finish_non_exhaustive()
    }
}

impl ApiResponse {
    /// The cookie named `name` that the response set, if any.
    pub fn cookie_named(&self, name: &str) -> Option<&Cookie<'static>> {
        self.cookies.iter().find(|cookie| cookie.name() == name)
    }

    /// The seconds its `Retry-After` header asks a client to wait; panics when it has none.
    pub fn retry_after(&self) -> u64 {
        self.headers
            .get("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After: {self:?}"))
            .parse()
            .expect("Retry-After in seconds")
    }

    /// The value of the page's hidden `csrf` field (the demo's forms have one each, all
    /// alike), if it has one.
    pub fn form_token(&self) -> Option<&str> {
        let (_, rest) = self.text.split_once(r#"name="csrf" value=""#)?;
        rest.split_once('"').map(|(token, _)| token)
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                char::from(byte).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

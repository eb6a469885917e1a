//! Rolling deploys of the demo behind nginx under a steady load of signed-in users (logins,
//! reads, writes, logouts), instances restarted one at a time:
//!
//! - a switch from actix-session's own Redis store: two old instances (`serve
//!   --legacy-store`), replaced by new ones interoperating, then restarted migrating. Nobody is
//!   logged out, no acknowledged write is lost, no logout is undone, every write is seen by both
//!   kinds while both run, and at the end the sessions live in the store's own layout, listed
//!   in their users' index;
//! - a rotation of the cookie key across three instances (each first learns the new key, then
//!   seals with it): nobody is logged out, every cookie after the last restart is sealed by
//!   the new key, and once the old key is dropped its cookies are no session.

use std::{
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use actix_web::cookie::Cookie;
use demo_app::{cookie_key::generate_cookie_key, launcher::balancer::Balancer};
use integration_tests::{
    RedisServer,
    demo::{ApiClient, ApiResponse, binary},
};

/// How an instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Old,
    Interoperating,
    Migrating,
}

impl Kind {
    fn args(self) -> &'static [&'static str] {
        match self {
            Self::Old => &["--legacy-store"],
            Self::Interoperating => &["--legacy-sessions", "interoperate"],
            Self::Migrating => &["--legacy-sessions", "migrate"],
        }
    }
}

/// The demo's instances on fixed ports, each started with the flags asked for.
struct Instances {
    url: String,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    kinds: Arc<Mutex<[Kind; 2]>>,
}

impl Instances {
    fn new(redis: &RedisServer, ports: Vec<u16>) -> Self {
        Self {
            url: redis.url(),
            children: ports.iter().map(|_| None).collect(),
            ports,
            kinds: Arc::new(Mutex::new([Kind::Old, Kind::Old])),
        }
    }

    /// Starts instance `index` as a switch from actix-session's store has it, with `key`.
    fn start(&mut self, index: usize, kind: Kind, key: &str) {
        self.start_with(index, kind.args(), &[("DEMO_COOKIE_KEY", key)]);
        self.kinds.lock().expect("kinds")[index] = kind;
    }

    /// Starts instance `index` with `args` and the environment `env`, and waits until it
    /// answers.
    fn start_with(&mut self, index: usize, args: &[&str], env: &[(&str, &str)]) {
        let port = self.ports[index];
        let peers: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        let mut command = Command::new(binary());
        command
            .args(["serve", "--plain-http", "--port", &port.to_string()])
            .args(["--redis-url", &self.url, "--peers", &peers.join(",")])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.children[index] = Some(command.spawn().expect("demo-app starts"));
        let started = Instant::now();
        let client = ApiClient::default();
        let health = format!("http://127.0.0.1:{port}/healthz");
        while client
            .try_send("GET", &health, None, None::<()>)
            .map_or(true, |response| response.status != 200)
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{args:?} on {port} never up"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops instance `index` as a deploy does: `SIGTERM`, requests in flight finished.
    fn stop(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    fn replace(&mut self, index: usize, kind: Kind, key: &str) {
        self.stop(index);
        self.start(index, kind, key);
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the virtual users found wrong, and what they checked.
#[derive(Default)]
struct Findings {
    violations: Mutex<Vec<String>>,
    writes: AtomicUsize,
    /// Writes read back on both kinds of instance while both ran.
    cross_checked: AtomicUsize,
    logouts: AtomicUsize,
    /// Each user's cookie at the end, and the cookies it logged out.
    finals: Mutex<Vec<(String, Cookie<'static>)>>,
    logged_out: Mutex<Vec<Cookie<'static>>>,
}

impl Findings {
    fn violation(&self, what: String) {
        self.violations.lock().expect("violations").push(what);
    }
}

/// One virtual user's loop: log in, then writes (each read back through the balancer and,
/// when both kinds run, on each instance directly), reads, and now and then a logout and a
/// new login, until `stop`.
fn virtual_user(
    user: &'static str,
    balancer: String,
    direct: [String; 2],
    kinds: Arc<Mutex<[Kind; 2]>>,
    stop: Arc<AtomicBool>,
    findings: Arc<Findings>,
) {
    let client = ApiClient::default();
    let password = format!("{user}-password");
    let mut cookie = log_in(&client, &balancer, user, &password);
    let mut round = 0u32;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let name = format!("{user}-{round}");
        let profile = serde_json::json!({"display_name": name});
        let written = client.try_send(
            "PUT",
            &format!("{balancer}/api/profile"),
            Some(&cookie),
            Some(profile),
        );
        let Ok(written) = written.map(|response| (response.status, response)) else {
            continue;
        };
        match written {
            (200, response) => {
                cookie = response.cookie.unwrap_or(cookie);
                findings.writes.fetch_add(1, Ordering::Relaxed);
            }
            // A restart under way: nothing acknowledged.
            (502 | 503, _) => continue,
            (status, response) => {
                findings.violation(format!(
                    "{user}: write answered {status}: {:?}",
                    response.json
                ));
                continue;
            }
        }
        let both = {
            let kinds = kinds.lock().expect("kinds");
            (kinds[0] == Kind::Old) != (kinds[1] == Kind::Old)
        };
        let mut seen_by = 0;
        for url in std::iter::once(&balancer).chain(&direct) {
            let Ok(me) =
                client.try_send("GET", &format!("{url}/api/me"), Some(&cookie), None::<()>)
            else {
                continue;
            };
            if me.status != 200 {
                continue;
            }
            if me.json["user"] != user || me.json["display_name"] != name.as_str() {
                findings.violation(format!(
                    "{user}: after writing {name}, {url} read {:?} from {}",
                    me.json, me.json["store"]
                ));
            }
            seen_by += usize::from(url != &balancer);
        }
        if both && seen_by == 2 {
            findings.cross_checked.fetch_add(1, Ordering::Relaxed);
        }
        if round.is_multiple_of(7) {
            let Ok(out) = client.try_send(
                "POST",
                &format!("{balancer}/api/logout"),
                Some(&cookie),
                None::<()>,
            ) else {
                continue;
            };
            if out.status == 200 {
                findings.logouts.fetch_add(1, Ordering::Relaxed);
                findings
                    .logged_out
                    .lock()
                    .expect("logged out")
                    .push(cookie.clone());
                for url in &direct {
                    if let Ok(me) =
                        client.try_send("GET", &format!("{url}/api/me"), Some(&cookie), None::<()>)
                        && me.status == 200
                        && !me.json["user"].is_null()
                    {
                        findings
                            .violation(format!("{user}: still signed in on {url} after a logout"));
                    }
                }
                cookie = log_in(&client, &balancer, user, &password);
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    findings
        .finals
        .lock()
        .expect("finals")
        .push((user.to_owned(), cookie));
}

/// Logs `user` in through the balancer, trying again while an instance restarts.
fn log_in(client: &ApiClient, balancer: &str, user: &str, password: &str) -> Cookie<'static> {
    let credentials = serde_json::json!({"username": user, "password": password});
    for _ in 0..100 {
        if let Ok(ApiResponse {
            status: 200,
            cookie: Some(cookie),
            ..
        }) = client.try_send(
            "POST",
            &format!("{balancer}/api/login"),
            None,
            Some(&credentials),
        ) {
            return cookie;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("{user} cannot log in");
}

#[test]
fn a_rollout_from_actix_sessions_store_logs_nobody_out() {
    let redis = RedisServer::start();
    let first = local_redis::free_ports(3).expect("free ports");
    let (ports, balancer_port) = ([first, first + 1], first + 2);
    let key = generate_cookie_key();
    let mut instances = Instances::new(&redis, ports.to_vec());
    instances.start(0, Kind::Old, &key);
    instances.start(1, Kind::Old, &key);
    let _balancer = Balancer::start(balancer_port, &ports, "secret").expect("nginx starts");

    let stop = Arc::new(AtomicBool::new(false));
    let findings = Arc::new(Findings::default());
    let users = ["alice", "bob"].map(|user| {
        let (stop, findings, kinds) = (stop.clone(), findings.clone(), instances.kinds.clone());
        let balancer = format!("http://127.0.0.1:{balancer_port}");
        let direct = ports.map(|port| format!("http://127.0.0.1:{port}"));
        thread::spawn(move || virtual_user(user, balancer, direct, kinds, stop, findings))
    });
    let phase = Duration::from_secs(3);
    thread::sleep(phase);
    for (index, kind) in [
        (0, Kind::Interoperating),
        (1, Kind::Interoperating),
        (0, Kind::Migrating),
        (1, Kind::Migrating),
    ] {
        instances.replace(index, kind, &key);
        thread::sleep(phase);
    }
    stop.store(true, Ordering::Relaxed);
    for user in users {
        user.join().expect("a virtual user");
    }

    let violations = findings.violations.lock().expect("violations").clone();
    assert!(violations.is_empty(), "{violations:#?}");
    let writes = findings.writes.load(Ordering::Relaxed);
    let cross_checked = findings.cross_checked.load(Ordering::Relaxed);
    assert!(writes > 50, "only {writes} writes");
    assert!(
        cross_checked > 5,
        "only {cross_checked} writes seen on both kinds"
    );
    assert!(findings.logouts.load(Ordering::Relaxed) > 2);

    let client = ApiClient::default();
    let direct = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    for cookie in findings.logged_out.lock().expect("logged out").iter() {
        for port in ports {
            let me = client.send("GET", &direct(port, "/api/me"), Some(cookie), None::<()>);
            assert!(me.json["user"].is_null(), "a logout undone: {:?}", me.json);
        }
    }
    // Every session ever made was either logged out or made requests after the migrating
    // step: none is left where the old store keeps them (its keys are the 64-character ids).
    let mut connection = redis.client().get_connection().expect("Redis");
    let keys: Vec<String> = redis::Commands::keys(&mut connection, "*").expect("KEYS");
    let old_layout: Vec<String> = keys
        .into_iter()
        .filter(|key| key.len() == 64 && key.bytes().all(|b| b.is_ascii_alphanumeric()))
        .collect();
    assert_eq!(
        old_layout,
        Vec::<String>::new(),
        "sessions left in the old layout"
    );
    for (user, cookie) in findings.finals.lock().expect("finals").iter() {
        let me = client.send(
            "GET",
            &direct(ports[0], "/api/me"),
            Some(cookie),
            None::<()>,
        );
        assert_eq!(me.json["user"], user.as_str(), "{user} logged out");
        let listed = client.send(
            "GET",
            &direct(ports[1], "/api/sessions"),
            Some(cookie),
            None::<()>,
        );
        let sessions = listed.json.as_array().cloned().unwrap_or_default();
        assert!(
            sessions.iter().any(|session| session["current"] == true),
            "{user}'s index lacks the session: {:?}",
            listed.json
        );
    }
}

/// Whether the cookie key `key` (base64) sealed `cookie`, as a response set it.
fn sealed_by(cookie: &Cookie<'static>, key: &str) -> bool {
    let key = demo_app::cookie_key::parse_cookie_key(key).expect("the test's key");
    let decoded = Cookie::parse_encoded(format!("{}={}", cookie.name(), cookie.value()))
        .expect("a cookie")
        .into_owned();
    let mut jar = actix_web::cookie::CookieJar::new();
    jar.add_original(decoded);
    jar.private(&key).get(cookie.name()).is_some()
}

/// A signed-in user reading and writing through the balancer until `stop`: every answer must
/// be signed in as `user`. Returns the cookies responses set after `rotated` was raised.
fn steady_user(
    user: &'static str,
    balancer: String,
    mut cookie: Cookie<'static>,
    rotated: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    findings: Arc<Findings>,
) -> Vec<Cookie<'static>> {
    let client = ApiClient::default();
    let mut after_rotation = Vec::new();
    let mut round = 0u32;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let answer = if round.is_multiple_of(5) {
            let profile = serde_json::json!({"display_name": format!("{user}-{round}")});
            client.try_send(
                "PUT",
                &format!("{balancer}/api/profile"),
                Some(&cookie),
                Some(profile),
            )
        } else {
            client.try_send(
                "GET",
                &format!("{balancer}/api/me"),
                Some(&cookie),
                None::<()>,
            )
        };
        let Ok(answer) = answer else { continue };
        if answer.status == 502 {
            continue;
        }
        if answer.status != 200 || answer.json["user"] != user {
            findings.violation(format!(
                "{user}: answered {} {:?}",
                answer.status, answer.json
            ));
        }
        if let Some(set) = answer.cookie {
            if rotated.load(Ordering::Relaxed) {
                after_rotation.push(set.clone());
            }
            cookie = set;
        }
        findings.writes.fetch_add(1, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(20));
    }
    after_rotation.push(cookie);
    after_rotation
}

#[test]
fn a_cookie_key_rotation_one_restart_at_a_time_logs_nobody_out() {
    let redis = RedisServer::start();
    let first = local_redis::free_ports(4).expect("free ports");
    let ports = vec![first, first + 1, first + 2];
    let balancer_port = first + 3;
    let (old_key, new_key) = (generate_cookie_key(), generate_cookie_key());
    let mut instances = Instances::new(&redis, ports.clone());
    for index in 0..3 {
        instances.start_with(index, &[], &[("DEMO_COOKIE_KEY", &old_key)]);
    }
    let _balancer = Balancer::start(balancer_port, &ports, "secret").expect("nginx starts");
    let balancer = format!("http://127.0.0.1:{balancer_port}");
    let client = ApiClient::default();
    let old_cookies =
        ["alice", "bob"].map(|user| log_in(&client, &balancer, user, &format!("{user}-password")));

    let (rotated, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let findings = Arc::new(Findings::default());
    let users: Vec<_> = ["alice", "bob"]
        .into_iter()
        .zip(old_cookies.clone())
        .map(|(user, cookie)| {
            let (balancer, rotated, stop, findings) = (
                balancer.clone(),
                rotated.clone(),
                stop.clone(),
                findings.clone(),
            );
            thread::spawn(move || steady_user(user, balancer, cookie, rotated, stop, findings))
        })
        .collect();
    // First every instance learns the new key (still sealing with the old one), then every
    // instance seals with the new key (still accepting the old one): at every moment, every
    // instance accepts every cookie any other instance sets.
    let learning = [
        ("DEMO_COOKIE_KEY", old_key.as_str()),
        ("DEMO_PREVIOUS_COOKIE_KEYS", new_key.as_str()),
    ];
    let rotating = [
        ("DEMO_COOKIE_KEY", new_key.as_str()),
        ("DEMO_PREVIOUS_COOKIE_KEYS", old_key.as_str()),
    ];
    for env in [learning, rotating] {
        for index in 0..3 {
            thread::sleep(Duration::from_secs(1));
            instances.stop(index);
            instances.start_with(index, &[], &env);
        }
    }
    rotated.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Cookie<'static>> = users
        .into_iter()
        .flat_map(|user| user.join().expect("a user"))
        .collect();

    let violations = findings.violations.lock().expect("violations").clone();
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(findings.writes.load(Ordering::Relaxed) > 100);
    assert!(seen.len() >= 2);
    for cookie in &seen {
        assert!(
            sealed_by(cookie, &new_key),
            "a cookie after the rotation not under the new key"
        );
    }
    // The old key dropped: its cookies are no session; the re-issued ones are.
    instances.stop(0);
    instances.start_with(0, &[], &[("DEMO_COOKIE_KEY", &new_key)]);
    let direct = format!("http://127.0.0.1:{}/api/me", ports[0]);
    for old in &old_cookies {
        let me = client.send("GET", &direct, Some(old), None::<()>);
        assert!(me.json["user"].is_null(), "{:?}", me.json);
    }
    let me = client.send("GET", &direct, seen.last(), None::<()>);
    assert!(!me.json["user"].is_null(), "{:?}", me.json);
}

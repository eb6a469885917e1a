//! Driving load at the server: wrk when it is installed, else a plain generator in Rust.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// One kind of request, sent over and over.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path on the server.
    pub path: &'static str,
    /// `name=value` of the session cookies to send, each request one picked at random (none
    /// when empty): many sessions, so that on a cluster the load spreads over every primary
    /// as real users' sessions would, and a cache holds many sessions as it would for real
    /// users. (The built-in generator takes them in turn.)
    pub cookies: Vec<String>,
}

/// What a load run measured.
#[derive(Debug, Clone, Copy)]
pub struct LoadResult {
    /// Requests completed.
    pub requests: u64,
    /// Responses that were not 2xx/3xx, and requests that failed outright.
    pub errors: u64,
    /// Requests per second.
    pub rate: f64,
    /// Median latency, in milliseconds.
    pub p50_ms: f64,
    /// 99th-percentile latency, in milliseconds.
    pub p99_ms: f64,
}

/// Which load generator is in use.
pub fn generator() -> &'static str {
    if wrk_installed() {
        "wrk"
    } else {
        "built-in generator (install wrk for better figures)"
    }
}

fn wrk_installed() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

/// Sends `request` over `connections` connections for `duration`, from CPU `cpu` when given.
///
/// # Errors
/// When the load generator fails.
pub fn run(
    port: u16,
    request: &Request,
    duration: Duration,
    connections: u32,
    cpu: Option<usize>,
) -> anyhow::Result<LoadResult> {
    if wrk_installed() {
        wrk(port, request, duration, connections, cpu)
    } else {
        Ok(built_in(port, request, duration, connections))
    }
}

fn wrk(
    port: u16,
    request: &Request,
    duration: Duration,
    connections: u32,
    cpu: Option<usize>,
) -> anyhow::Result<LoadResult> {
    let script_file = tempfile::NamedTempFile::new()?;
    std::fs::write(script_file.path(), wrk_script(request))?;

    let mut command = pinned(cpu, "wrk");
    command
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{}s", duration.as_secs()),
            "--latency",
            "-s",
        ])
        .arg(script_file.path())
        .arg(format!("http://127.0.0.1:{port}"));
    let output = command.output().context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

/// The Lua script that makes wrk send `request`: with one cookie or none, a fixed request
/// (wrk builds it once); with more, each request picks one at random.
fn wrk_script(request: &Request) -> String {
    let mut script = format!(
        "wrk.method = \"{}\"\nwrk.path = \"{}\"\n",
        request.method, request.path
    );
    match request.cookies.as_slice() {
        [] => {}
        [cookie] => script.push_str(&format!("wrk.headers[\"Cookie\"] = \"{cookie}\"\n")),
        cookies => {
            let list: Vec<String> = cookies.iter().map(|c| format!("\"{c}\"")).collect();
            script.push_str(&format!("local cookies = {{{}}}\n", list.join(", ")));
            script.push_str(
                "request = function()\n\
                 return wrk.format(nil, nil, {[\"Cookie\"] = cookies[math.random(#cookies)]})\n\
                 end\n",
            );
        }
    }
    script
}

/// A command run on one CPU when `cpu` is given (with `taskset`).
pub fn pinned(cpu: Option<usize>, program: &str) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", &cpu.to_string(), program]);
            command
        }
        None => Command::new(program),
    }
}

fn parse_wrk(text: &str) -> Option<LoadResult> {
    let mut result = LoadResult {
        requests: 0,
        errors: 0,
        rate: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
    };
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("50%"), Some(value)) => result.p50_ms = millis(value)?,
            (Some("99%"), Some(value)) => result.p99_ms = millis(value)?,
            (Some("Requests/sec:"), Some(value)) => result.rate = value.parse().ok()?,
            (Some(count), Some("requests")) => result.requests = count.parse().ok()?,
            _ if line.starts_with("Non-2xx or 3xx responses:") => {
                result.errors += line.rsplit(' ').next()?.parse::<u64>().ok()?;
            }
            _ if line.starts_with("Socket errors:") => {
                result.errors += line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    (result.rate > 0.0).then_some(result)
}

/// wrk's durations: `345.00us`, `1.23ms`, `2.00s`.
fn millis(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(number / 1000.0),
        "ms" => Some(number),
        "s" => Some(number * 1000.0),
        "m" => Some(number * 60_000.0),
        _ => None,
    }
}

/// One thread per connection, each sending requests back to back on a kept-alive connection.
fn built_in(port: u16, request: &Request, duration: Duration, connections: u32) -> LoadResult {
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("http://127.0.0.1:{port}{}", request.path);
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (stop, url, request) = (Arc::clone(&stop), url.clone(), request.clone());
            thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                let mut cookies = request.cookies.iter().cycle();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let mut builder = ureq::http::Request::builder()
                        .method(request.method)
                        .uri(&url);
                    if let Some(cookie) = cookies.next() {
                        builder = builder.header("cookie", cookie);
                    }
                    let ok = builder
                        .body(())
                        .ok()
                        .and_then(|req| agent.run(req).ok())
                        .is_some_and(|mut response| {
                            let _ = response.body_mut().read_to_vec();
                            response.status().as_u16() < 400
                        });
                    latencies.push(sent.elapsed());
                    errors += u64::from(!ok);
                }
                (latencies, errors)
            })
        })
        .collect();
    thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (l, e) = worker.join().expect("a load thread");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    LoadResult {
        requests: latencies.len() as u64,
        errors,
        rate: latencies.len() as f64 / elapsed,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let text = "Running 8s test @ http://127.0.0.1:1
  1 threads and 32 connections
  Latency Distribution
     50%  345.00us
     75%  500.00us
     90%  800.00us
     99%    1.20ms
  123456 requests in 8.00s, 12.34MB read
  Non-2xx or 3xx responses: 5
Requests/sec:  15432.10
Transfer/sec:      1.54MB
";
        let result = parse_wrk(text).expect("parsed");
        assert_eq!(result.requests, 123_456);
        assert_eq!(result.errors, 5);
        assert!((result.rate - 15432.10).abs() < 1e-6);
        assert!((result.p50_ms - 0.345).abs() < 1e-9);
        assert!((result.p99_ms - 1.2).abs() < 1e-9);
    }
}

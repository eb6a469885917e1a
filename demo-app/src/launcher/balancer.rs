//! The load balancer in front of the instances: nginx from the system's packages, run as a
//! child of the launcher with a config written for this launch into a folder of its own.

use std::{
    io::ErrorKind,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tempfile::TempDir;

use super::output::prefix_lines;

/// How long nginx may take to listen after it starts.
const STARTUP: Duration = Duration::from_secs(5);

/// How long a request waits for an instance to accept its connection before nginx tries the
/// next one. They are all on loopback: a healthy one accepts at once.
const CONNECT_TIMEOUT: &str = "1s";

/// How long an instance that failed a request is left out before nginx tries it again: about
/// as long as the launcher takes to start a dead one again.
const FAIL_TIMEOUT: &str = "2s";

const INSTALL_HINT: &str = "install it with `sudo apt-get install nginx` (scripts/demo and scripts/test do), \
    or set NGINX_BIN to its path";

/// A running nginx, killed (with its folder removed) on drop.
pub struct Balancer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Balancer {
    /// Starts nginx on the loopback `port`, spreading requests round robin over the
    /// instances on `upstreams`, and waits until it listens.
    ///
    /// # Errors
    /// When nginx is not installed, the port is taken, or nginx exits or does not listen in
    /// time; each says so in words a person can act on.
    pub fn start(port: u16, upstreams: &[u16], secret: &str) -> anyhow::Result<Self> {
        let nginx = binary().with_context(|| format!("nginx is not installed: {INSTALL_HINT}"))?;
        if let Err(err) = TcpListener::bind(("127.0.0.1", port)) {
            bail!("port {port} is taken ({err}); choose another with --balancer-port");
        }
        let dir = tempfile::Builder::new()
            .prefix("demo-balancer-")
            .tempdir()
            .context("cannot make a folder for nginx")?;
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config(dir.path(), port, upstreams, secret))
            .context("cannot write nginx's config")?;
        let mut child = Command::new(&nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            // Where it logs before it has read the config (by default a file under /var/log).
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| match err.kind() {
                ErrorKind::NotFound => anyhow::anyhow!("nginx is not installed: {INSTALL_HINT}"),
                _ => anyhow::anyhow!("cannot start {}: {err}", nginx.display()),
            })?;
        if let Some(stdout) = child.stdout.take() {
            prefix_lines("nginx".to_owned(), stdout, false);
        }
        if let Some(stderr) = child.stderr.take() {
            prefix_lines("nginx".to_owned(), stderr, true);
        }
        let mut balancer = Self { child, port, dir };
        balancer.wait_until_listening()?;
        Ok(balancer)
    }

    fn wait_until_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("nginx exited with {status} (its reasons are above, marked [nginx])");
            }
            if local_redis::wait_until_listening(self.port, Duration::from_millis(100)) {
                return Ok(());
            }
        }
        bail!(
            "nginx did not listen on port {} within {STARTUP:?}",
            self.port
        );
    }

    /// The port it listens on.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// nginx's process id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The folder of nginx's config and files.
    pub(super) fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// How nginx ended, if it has.
    pub(super) fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        // One process (see the config): killing it leaves nothing behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx: `NGINX_BIN` when set, else the first `nginx` on `PATH` or in the sbin folders,
/// which are not on every user's `PATH`.
fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NGINX_BIN") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

/// nginx's config: round robin over the instances on loopback, listening on `port`, with
/// every file it writes under `dir`, proving itself to the instances with `secret`.
///
/// A request is passed to the next instance when one refuses the connection, times out or
/// answers 502/504: what a dead or stuck instance does. Never on 503: that is an instance's
/// answer for an unavailable Redis, which every instance would give alike; the client gets
/// it with its `Retry-After`, and the instance is not counted as failed.
fn config(dir: &Path, port: u16, upstreams: &[u16], secret: &str) -> String {
    // Quoted, so that a TMPDIR with spaces or `;` in it stays one path.
    let dir = dir
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let servers: String = upstreams
        .iter()
        .map(|upstream| {
            format!(
                "        server 127.0.0.1:{upstream} max_fails=1 fail_timeout={FAIL_TIMEOUT};\n"
            )
        })
        .collect();
    format!(
        r#"# Written by the demo launcher for this run; removed when it stops.
daemon off;
# One process: it stops with the launcher, leaves no worker behind, and needs no worker user
# allowed into this private folder.
master_process off;
pid "{dir}/nginx.pid";
error_log stderr warn;

# Each proxied connection takes two descriptors; nginx raises its own limit to this.
worker_rlimit_nofile 8192;

events {{
    # Room for every instance's event streams (at most a few per session) beside page views.
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path "{dir}/client_body";
    proxy_temp_path "{dir}/proxy";
    fastcgi_temp_path "{dir}/fastcgi";
    uwsgi_temp_path "{dir}/uwsgi";
    scgi_temp_path "{dir}/scgi";

    upstream instances {{
{servers}    }}

    server {{
        listen 127.0.0.1:{port};

        location / {{
            proxy_pass http://instances;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # What the instances believe X-Forwarded-For on (see client_address.rs).
            proxy_set_header X-Demo-Balancer "{secret}";
            proxy_connect_timeout {CONNECT_TIMEOUT};
            proxy_next_upstream error timeout http_502 http_504;
        }}
    }}
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_spreads_over_every_instance_and_never_retries_a_503() {
        let config = config(Path::new("/tmp/x"), 8080, &[8081, 8082], "s3cret");
        assert!(config.contains("server 127.0.0.1:8081 "), "{config}");
        assert!(config.contains("server 127.0.0.1:8082 "), "{config}");
        assert!(config.contains("listen 127.0.0.1:8080;"), "{config}");
        assert!(
            config.contains("proxy_next_upstream error timeout http_502 http_504;"),
            "{config}"
        );
        assert!(!config.contains("http_503"), "{config}");
        assert!(config.contains("$proxy_add_x_forwarded_for"), "{config}");
        let odd = super::config(Path::new("/tmp/a b;c\"d"), 8080, &[8081], "s");
        assert!(odd.contains(r#"pid "/tmp/a b;c\"d/nginx.pid";"#), "{odd}");
        assert!(
            config.contains("proxy_set_header X-Demo-Balancer \"s3cret\";"),
            "{config}"
        );
    }
}

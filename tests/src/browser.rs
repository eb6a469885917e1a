//! Headless Chromium driven through WebDriver (`chromedriver`), with screenshots.

use std::{
    io::ErrorKind,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::{sys::signal, unistd::Pid};
use tempfile::TempDir;

/// How long a page may take to load or show an element.
const PAGE_LOAD: Duration = Duration::from_secs(15);

const INSTALL_HINT: &str = "install Chromium and its driver with \
    `sudo apt-get install chromium chromium-driver` (scripts/test does), or set CHROMEDRIVER \
    and CHROMIUM_BIN to their paths";

/// A headless Chromium session; the driver process is stopped on drop.
pub struct Browser {
    client: Client,
    shots: PathBuf,
    // Dropped after the client: the driver (and the Chromium it started) go last.
    _driver: Driver,
    _profile: TempDir,
}

/// The `chromedriver` process, in a process group of its own so that stopping the group stops
/// the Chromium it started as well, even when a test panics halfway.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.0.id() as i32);
        let _ = signal::killpg(group, signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

impl Browser {
    /// Starts `chromedriver` on a free port and opens a headless Chromium through it.
    /// Screenshots go to `shots`.
    pub async fn start(shots: PathBuf) -> Self {
        Self::start_with(shots, &[]).await
    }

    /// Like [`start`](Self::start), with more Chromium arguments (`--user-agent=...`, say).
    ///
    /// A start that fails (the driver's free port taken meanwhile, Chromium slow to come up on
    /// a busy machine) is tried once more, with a new port and profile; a second failure
    /// panics with the driver's log of both tries.
    pub async fn start_with(shots: PathBuf, extra_args: &[&str]) -> Self {
        let chromium =
            std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        assert!(
            std::path::Path::new(&chromium).exists(),
            "{chromium} is missing: {INSTALL_HINT}"
        );
        std::fs::create_dir_all(&shots).expect("the screenshot folder");
        let mut failures = Vec::new();
        for _ in 0..2 {
            let profile = tempfile::tempdir().expect("a temporary profile dir");
            match start_session(&chromium, &profile, extra_args).await {
                Ok((client, driver)) => {
                    return Self {
                        client,
                        shots,
                        _driver: driver,
                        _profile: profile,
                    };
                }
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "Chromium did not start through chromedriver, twice ({INSTALL_HINT}):\n{}",
            failures.join("\n")
        );
    }

    /// Opens `url`.
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|err| panic!("opening {url}: {err}"));
    }

    /// Types `text` into the element with this id.
    pub async fn fill(&self, id: &str, text: &str) {
        let field = self.find(id).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("typing");
    }

    /// Clicks the element with this id and waits until the page it leads to has replaced the
    /// current one.
    pub async fn click(&self, id: &str) {
        let old_page = self.find_css("html").await;
        let element = self.find(id).await;
        element
            .click()
            .await
            .unwrap_or_else(|err| panic!("clicking #{id}: {err}"));
        let deadline = Instant::now() + PAGE_LOAD;
        // Reading a detached element fails: then the new page is there.
        while old_page.tag_name().await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "clicking #{id} led nowhere within {PAGE_LOAD:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the element with this id.
    pub async fn text(&self, id: &str) -> String {
        self.find(id).await.text().await.expect("element text")
    }

    /// Waits until the text of the element with this id contains `wanted`, and returns it.
    pub async fn wait_for_text(&self, id: &str, wanted: &str) -> String {
        let deadline = Instant::now() + PAGE_LOAD;
        loop {
            let text = self.text(id).await;
            if text.contains(wanted) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "#{id} did not come to say {wanted:?} within {PAGE_LOAD:?}: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The attribute `name` of the element with this id, if it has one.
    pub async fn attribute(&self, id: &str, name: &str) -> Option<String> {
        self.find(id)
            .await
            .attr(name)
            .await
            .unwrap_or_else(|err| panic!("#{id}'s {name}: {err}"))
    }

    /// The path of the page the browser shows.
    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("the current URL")
            .path()
            .to_owned()
    }

    /// The element with this id, waiting for the page to show it.
    async fn find(&self, id: &str) -> fantoccini::elements::Element {
        self.wait_for(Locator::Id(id), &format!("#{id}")).await
    }

    /// The first element `selector` matches, waiting for the page to show it.
    async fn find_css(&self, selector: &str) -> fantoccini::elements::Element {
        self.wait_for(Locator::Css(selector), selector).await
    }

    /// The element `locator` (`what`, in a failure) finds, waiting for the page to show it.
    async fn wait_for(&self, locator: Locator<'_>, what: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PAGE_LOAD)
            .for_element(locator)
            .await
            .unwrap_or_else(|err| panic!("{what}: {err}"))
    }

    /// Saves a PNG of the page as `{name}.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }

    /// Ends the browser session and stops the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// Starts `chromedriver` on a free port, with its log in `profile`, and a Chromium session
/// through it. On failure, says why with the driver's log.
async fn start_session(
    chromium: &str,
    profile: &TempDir,
    extra_args: &[&str],
) -> Result<(Client, Driver), String> {
    let port = local_redis::free_port().expect("a free port");
    let log_path = profile.path().join("chromedriver.log");
    let log = std::fs::File::create(&log_path).expect("the driver's log file");
    let mut driver =
        Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned()))
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .map(Driver)
            .unwrap_or_else(|err| match err.kind() {
                ErrorKind::NotFound => panic!("chromedriver is missing: {INSTALL_HINT}"),
                _ => panic!("chromedriver did not start: {err}"),
            });
    let failed = |what: String| {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        format!("{what}; chromedriver's output:\n{log}")
    };
    let listening = local_redis::wait_until_listening(port, Duration::from_secs(20));
    // A driver that exited found its port taken: whatever listens there is not ours.
    if let Ok(Some(status)) = driver.0.try_wait() {
        return Err(failed(format!("chromedriver exited ({status})")));
    }
    if !listening {
        return Err(failed(format!(
            "chromedriver did not listen on {port} within 20 s"
        )));
    }

    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--window-size=1000,760".to_owned(),
        format!(
            "--user-data-dir={}",
            profile.path().join("chromium").display()
        ),
    ];
    args.extend(extra_args.iter().map(|&arg| arg.to_owned()));
    let capabilities = serde_json::json!({
        "goog:chromeOptions": { "binary": chromium, "args": args }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!("an object literal")
    };
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .map_err(|err| failed(format!("no WebDriver session ({err})")))?;
    Ok((client, driver))
}

//! Headless Chromium driven through `chromedriver` with fantoccini.

use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::cookies::Cookie;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use testkit::{free_port, Service};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long [`Window::find`] waits for an element to appear.
const FIND_WAIT: Duration = Duration::from_secs(5);

/// A `chromedriver` on a free loopback port, in a process group of its own: dropping it kills that
/// group by its id, the browsers it started included. (fantoccini closes a dropped session from a
/// spawned task, which the runtime of a test that is ending, or failing, never runs.)
pub struct ChromeDriver {
    process: Service,
    /// The browsers' profiles and chromedriver's log.
    dir: tempfile::TempDir,
}

impl ChromeDriver {
    /// Starts `chromedriver` and waits until it listens.
    pub fn start() -> Self {
        for (path, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the browser test needs Debian's packages `chromium` and \
                 `chromium-driver` (apt-get install chromium chromium-driver; {package} provides it)"
            );
        }
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("chromedriver.log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"));
        let process = Service::new("chromedriver", child, port, || {
            std::fs::read_to_string(&log).unwrap_or_default()
        });
        Self { process, dir }
    }

    /// A new browser window with a fresh profile, so its cookies are its own.
    pub async fn open(&self) -> Window {
        let profile = tempfile::tempdir_in(self.dir.path()).unwrap().keep();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            // With no network, background fetches (updates, sync, safe browsing) stall the browser.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(serde_json::from_value(capabilities).unwrap())
            .connect(&format!("http://127.0.0.1:{}", self.process.port))
            .await
            .expect("chromedriver opens a browser");
        Window(client)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group's id is chromedriver's PID; `Service` then reaps chromedriver.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.process.pid())])
            .status();
    }
}

/// One browser window (a WebDriver session with its own profile and cookie jar): fantoccini's
/// client, plus lookups that fail the test with what the page showed.
pub struct Window(Client);

impl Deref for Window {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.0
    }
}

impl Window {
    /// The element matching a CSS selector, waiting a little for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let found = self
            .wait()
            .at_most(FIND_WAIT)
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => panic!(
                "no element matches {css:?} ({e}) at {}:\n{}",
                self.current_url().await.unwrap(),
                self.source().await.unwrap()
            ),
        }
    }

    /// The rendered text of the element matching `css`, waiting for it as [`Window::find`] does.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Whether any element matches `css` now, without waiting.
    pub async fn shows(&self, css: &str) -> bool {
        !self.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    /// The cookie `name` as the browser holds it.
    pub async fn cookie(&self, name: &str) -> Option<Cookie<'static>> {
        let cookies = self.get_all_cookies().await.unwrap();
        cookies.into_iter().find(|c| c.name() == name)
    }
}

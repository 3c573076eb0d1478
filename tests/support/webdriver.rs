//! Just enough of a W3C WebDriver client to drive headless Chromium through `chromedriver`: plain
//! HTTP/1.1 over a `TcpStream`, JSON through serde_json, one connection per command.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::free_port;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key under which WebDriver hands out an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long [`Window::find`] waits for an element to appear.
const FIND_WAIT: Duration = Duration::from_secs(5);

/// A `chromedriver` process on a free loopback port, stopped by its PID when dropped.
pub struct ChromeDriver {
    child: Child,
    port: u16,
    _log_dir: tempfile::TempDir,
}

impl ChromeDriver {
    /// Starts `chromedriver` and waits until it reports ready.
    pub fn start() -> Self {
        for (path, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the browser test needs Debian's packages `chromium` and \
                 `chromium-driver` (apt-get install chromium chromium-driver; {package} provides it)"
            );
        }
        let port = free_port();
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("chromedriver.log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"));
        let driver = Self {
            child,
            port,
            _log_dir: log_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = TcpStream::connect(("127.0.0.1", port)).is_ok()
                && driver.command("GET", "/status", None).1["value"]["ready"] == json!(true);
            if ready {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new browser window with a fresh profile, so its cookies are its own.
    pub fn open(&self) -> Window<'_> {
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
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
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                }
            }
        });
        let value = self.ok("POST", "/session", Some(&capabilities));
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session: no sessionId in {value}"))
            .to_owned();
        Window {
            driver: self,
            id,
            _profile: profile,
        }
    }

    /// Sends a command; panics unless it succeeds. Returns the reply's `value`.
    fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, mut reply) = self.command(method, path, body);
        assert!(
            status == 200,
            "WebDriver {method} {path} failed ({status}): {}",
            reply["value"]["message"]
        );
        reply["value"].take()
    }

    /// One HTTP/1.1 request to chromedriver; returns the status and the JSON reply.
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("chromedriver on port {}: {e}", self.port));
        // Starting a browser takes a few seconds; a minute means it hangs.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/json; charset=utf-8\r\nContent-Length: {length}\r\n\
             Connection: close\r\n\r\n{body}",
            port = self.port,
            length = body.len(),
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader
            .read_line(&mut status_line)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: no reply: {e}"));
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!("WebDriver {method} {path}: bad status line {status_line:?}")
            });
        let mut length = None;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((&line, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "transfer-encoding" => {
                    panic!("WebDriver {method} {path}: chunked replies are not supported")
                }
                _ => {}
            }
        }
        let mut bytes = Vec::new();
        match length {
            Some(n) => {
                bytes.resize(n, 0);
                reader.read_exact(&mut bytes).unwrap();
            }
            None => {
                reader.read_to_end(&mut bytes).unwrap();
            }
        }
        let reply = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "WebDriver {method} {path}: reply is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, reply)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver session: a browser window with its own profile and cookie jar. Closed (the
/// browser quits) when dropped.
pub struct Window<'d> {
    driver: &'d ChromeDriver,
    id: String,
    _profile: tempfile::TempDir,
}

impl Window<'_> {
    fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.driver
            .ok(method, &format!("/session/{}{path}", self.id), body)
    }

    /// Opens `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.ok("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Reloads the page (a GET, so nothing is posted again).
    pub fn refresh(&self) {
        self.ok("POST", "/refresh", Some(&json!({})));
    }

    pub fn url(&self) -> String {
        self.ok("GET", "/url", None).as_str().unwrap().to_owned()
    }

    /// The page's HTML as the browser sees it now.
    pub fn source(&self) -> String {
        self.ok("GET", "/source", None).as_str().unwrap().to_owned()
    }

    /// The cookie `name` as the browser holds it (`name`, `value`, `httpOnly`, `sameSite`, …).
    pub fn cookie(&self, name: &str) -> Option<Value> {
        let cookies = self.ok("GET", "/cookie", None);
        cookies
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
    }

    /// The element matching a CSS selector, waiting a little for it to appear.
    pub fn find(&self, css: &str) -> Element<'_> {
        let deadline = Instant::now() + FIND_WAIT;
        loop {
            if let Some(element) = self.find_all(css).into_iter().next() {
                return element;
            }
            assert!(
                Instant::now() < deadline,
                "no element matches {css:?} at {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every element matching a CSS selector now, without waiting.
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let found = self.ok(
            "POST",
            "/elements",
            Some(&json!({ "using": "css selector", "value": css })),
        );
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|reference| Element {
                window: self,
                id: reference[ELEMENT_KEY].as_str().unwrap().to_owned(),
            })
            .collect()
    }
}

impl Drop for Window<'_> {
    fn drop(&mut self) {
        // Best effort: a failed test still closes its browser before chromedriver is stopped.
        let _ = self
            .driver
            .command("DELETE", &format!("/session/{}", self.id), None);
    }
}

/// An element of the page a [`Window`] shows.
pub struct Element<'t> {
    window: &'t Window<'t>,
    id: String,
}

impl Element<'_> {
    fn ok(&self, method: &str, command: &str, body: Option<&Value>) -> Value {
        self.window
            .ok(method, &format!("/element/{}{command}", self.id), body)
    }

    /// Types `text` into the element, as keystrokes.
    pub fn send_keys(&self, text: &str) {
        self.ok("POST", "/value", Some(&json!({ "text": text })));
    }

    /// Clicks the element; a click that submits a form waits for the next page to load.
    pub fn click(&self) {
        self.ok("POST", "/click", Some(&json!({})));
    }

    /// The element's rendered text.
    pub fn text(&self) -> String {
        self.ok("GET", "/text", None).as_str().unwrap().to_owned()
    }
}

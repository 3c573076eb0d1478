//! An example binary (`demo`, `login`, …) run as its own process on a free loopback port, driven
//! black-box over real TCP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::Service;

/// An example as `cargo test` built it, beside the running test binary.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    debug_dir.join("examples").join(name)
}

/// A running example process, stopped by its PID when dropped.
pub struct ExampleProcess {
    process: Service,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A response read off the wire: status, the `Set-Cookie` header and the body.
pub type RawReply = (u16, Option<String>, String);

impl ExampleProcess {
    /// Starts example `name` on a free port with plain-http cookies and `env` on top, and waits
    /// until it listens.
    pub fn start(name: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let process = Service::serve(
            name,
            Command::new(example_binary(name))
                .env_remove("REDIS_URL")
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1")
                .envs(env.iter().copied())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(Stdio::null()),
            || std::fs::read_to_string(&log).unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("the {name} example is built by `cargo test`: {e}"));
        let port = process.port;
        Self {
            process,
            port,
            log,
            _dir: dir,
        }
    }

    /// What the process printed on stdout so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One HTTP/1.1 request with the `sid` cookie, if given.
    pub fn request(&self, method: &str, path: &str, cookie: Option<&str>) -> RawReply {
        request(self.port, method, path, cookie, "")
    }
}

impl ExampleProcess {
    /// Sends SIGTERM (by PID) and waits up to `limit` for the process to exit on its own.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        self.process.terminate(limit)
    }
}

/// One HTTP/1.1 request to a loopback port over a fresh connection, with the `sid` cookie if given
/// and a form body (sent as `application/x-www-form-urlencoded`) if not empty.
pub fn request(port: u16, method: &str, path: &str, cookie: Option<&str>, form: &str) -> RawReply {
    let reply = request_with_headers(port, method, path, cookie, form);
    let set_cookie = reply.header("set-cookie").map(str::to_owned);
    (reply.status, set_cookie, reply.body)
}

/// A response read off the wire with every header, names lowercased, in the order received.
#[derive(Debug)]
pub struct WireReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl WireReply {
    /// The value of the last header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// [`request`], keeping every response header.
pub fn request_with_headers(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &str,
) -> WireReply {
    let cookie = cookie.map(|token| format!("sid={token}"));
    request_with_cookie(port, method, path, cookie.as_deref(), form)
}

/// [`request_with_headers`] with a whole `Cookie` header (`name=value; …`), if given.
pub fn request_with_cookie(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &str,
) -> WireReply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let content_type = if form.is_empty() {
        ""
    } else {
        "Content-Type: application/x-www-form-urlencoded\r\n"
    };
    // One write: PHP's built-in server can take a request split across packets for malformed.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{cookie}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let mut body = String::new();
    reader.read_to_string(&mut body).unwrap();
    WireReply {
        status,
        headers,
        body,
    }
}

/// The token a `Set-Cookie: sid=…` header carries.
pub fn token_of(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("sid=")
        .to_owned()
}

//! The demo binary, black-box over real TCP: the README's first command, with Redis, without it, and
//! with a configured Redis that is down.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, RedisServer};

/// The demo example as `cargo test` built it, beside this test binary.
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    debug_dir.join("examples").join("demo")
}

/// A running demo process, stopped by its PID when dropped.
struct Demo {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Demo {
    fn start(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("demo.log");
        let child = Command::new(demo_binary())
            .env_remove("REDIS_URL")
            .env("ADDR", format!("127.0.0.1:{port}"))
            .env("COOKIE_SECURE", "false")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("the demo example is built by `cargo test`");
        let demo = Self {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "demo did not listen: {}",
                demo.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        demo
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One HTTP/1.1 request; returns status, the `Set-Cookie` header and the body.
    fn request(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
    ) -> (u16, Option<String>, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let cookie = cookie
            .map(|c| format!("Cookie: sid={c}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{cookie}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut set_cookie = None;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.strip_prefix("set-cookie: ") {
                set_cookie = Some(value.trim().to_owned());
            }
        }
        let mut body = String::new();
        reader.read_to_string(&mut body).unwrap();
        (status, set_cookie, body)
    }

    /// Counts up twice with the cookie the first response set, and returns the cookie's token.
    fn count_twice(&self) -> String {
        let (status, set_cookie, body) = self.request("GET", "/counter", None);
        assert_eq!((status, body.as_str()), (200, "1"));
        let set_cookie = set_cookie.expect("a session cookie");
        assert!(
            set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
            "{set_cookie}"
        );
        let token = set_cookie
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("sid=")
            .to_owned();
        let (_, _, body) = self.request("GET", "/counter", Some(&token));
        assert_eq!(body, "2");
        token
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn demo_serves_the_contract_on_redis() {
    let server = RedisServer::start();
    let demo = Demo::start(&[("REDIS_URL", &server.url()), ("SESSION_PREFIX", "demo:")]);
    assert_eq!(demo.request("GET", "/health", None).2, "ok");
    let token = demo.count_twice();
    let key = support::session_key("demo:", &token);
    let count = Command::new("redis-cli")
        .args(["-p", &server.port.to_string(), "hget", &key, "count"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&count.stdout).trim(),
        "2",
        "the session lives in Redis"
    );
    let metrics = demo.request("GET", "/metrics", None).2;
    assert!(
        metrics.contains("session_saves_total{kind=\"create\"} 1"),
        "{metrics}"
    );
}

#[test]
fn demo_without_redis_url_uses_the_default_redis_or_falls_back_to_memory() {
    let default_redis_answers = TcpStream::connect("127.0.0.1:6379").is_ok();
    let demo = Demo::start(&[]);
    demo.count_twice();
    let fell_back = demo.log().contains("using the in-memory store");
    assert_eq!(fell_back, !default_redis_answers, "log: {}", demo.log());
}

#[test]
fn demo_with_redis_url_down_starts_answers_503_and_recovers() {
    let port = free_port();
    let demo = Demo::start(&[("REDIS_URL", &format!("redis://127.0.0.1:{port}"))]);
    assert_eq!(demo.request("GET", "/health", None).0, 200);
    let (status, set_cookie, body) = demo.request("GET", "/counter", None);
    assert_eq!(
        (status, set_cookie, body.as_str()),
        (503, None, "session store unavailable")
    );

    let _server = RedisServer::start_on(port, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while demo.request("GET", "/counter", None).0 != 200 {
        assert!(Instant::now() < deadline, "the demo did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
}

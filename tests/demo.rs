//! The demo binary, black-box over real TCP: the README's first command, with Redis, without it, and
//! with a configured Redis that is down.

mod support;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{free_port, token_of, ExampleProcess, RawReply, RedisServer};

/// The demo example, started with `env` on top of plain-http cookies.
struct Demo(ExampleProcess);

impl Demo {
    fn start(env: &[(&str, &str)]) -> Self {
        Self(ExampleProcess::start("demo", env))
    }

    fn log(&self) -> String {
        self.0.log()
    }

    fn request(&self, method: &str, path: &str, cookie: Option<&str>) -> RawReply {
        self.0.request(method, path, cookie)
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
        let token = token_of(&set_cookie);
        let (_, _, body) = self.request("GET", "/counter", Some(&token));
        assert_eq!(body, "2");
        token
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

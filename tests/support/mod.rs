//! Test support: real `redis-server` processes on free loopback ports, a `MONITOR` tap that counts
//! what Redis receives, and a cookie-keeping client that drives the demo's HTTP contract.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own part of this module

#[path = "../../examples/demo.rs"]
pub mod demo;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use axum_redis_session::fred::prelude::*;
use axum_redis_session::{RedisStore, SessionLayer};
use http_body_util::BodyExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tower::ServiceExt;

/// A `redis-server` of our own on a free loopback port, stopped by its PID when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `["--appendonly", "yes"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on(free_port(), extra)
    }

    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let server = Self {
            port,
            child,
            _dir: dir,
        };
        server.wait_until_ready();
        server
    }

    pub fn dir(&self) -> PathBuf {
        self._dir.path().to_owned()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ready = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "ping"])
                .output()
                .is_ok_and(|out| out.stdout.starts_with(b"PONG"));
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// Stops the server by its PID and waits for it to exit.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A fred client for inspecting what the layer wrote.
    pub async fn probe(&self) -> Client {
        let client = Builder::from_config(Config::from_url(&self.url()).unwrap())
            .build()
            .unwrap();
        client.init().await.expect("probe connects");
        client
    }

    /// A store connected to this server, ready (connected) before it is returned.
    pub async fn store(&self) -> RedisStore {
        let pool = Builder::from_config(Config::from_url(&self.url()).unwrap())
            .build_pool(2)
            .unwrap();
        pool.init().await.expect("store connects");
        RedisStore::from_pool(pool)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One command as `MONITOR` reported it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Sent by a script rather than by a client.
    pub from_script: bool,
    /// Lower-case command name.
    pub name: String,
    /// The whole line, for searching.
    pub line: String,
}

/// Everything Redis receives, via `MONITOR` on a raw connection.
pub struct Monitor {
    lines: Arc<Mutex<Vec<String>>>,
    probe: Client,
    marks: u64,
}

/// The commands Redis received for one request.
#[derive(Debug)]
pub struct Received(pub Vec<Seen>);

/// Commands that change data.
const WRITES: &[&str] = &[
    "hset",
    "hdel",
    "del",
    "pexpire",
    "expire",
    "zadd",
    "zrem",
    "zremrangebyscore",
    "set",
];

impl Received {
    /// Round trips: commands a client sent, as opposed to those its scripts ran.
    pub fn round_trips(&self) -> usize {
        self.0.iter().filter(|c| !c.from_script).count()
    }

    /// Commands that changed data, wherever they ran.
    pub fn writes(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|c| WRITES.contains(&c.name.as_str()))
            .map(|c| c.name.as_str())
            .collect()
    }

    pub fn any_line_contains(&self, needle: &str) -> bool {
        self.0.iter().any(|c| c.line.contains(needle))
    }
}

impl Monitor {
    pub async fn start(server: &RedisServer) -> Self {
        // Connected first, so its handshake is not among what the monitor reports.
        let probe = server.probe().await;
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(b"MONITOR\r\n").await.unwrap();
        let mut reader = BufReader::new(read);
        let mut ok = String::new();
        reader.read_line(&mut ok).await.unwrap();
        assert!(ok.starts_with("+OK"), "MONITOR refused: {ok}");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        tokio::spawn(async move {
            let _keep_open = write;
            let mut line = String::new();
            while reader.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                sink.lock().unwrap().push(std::mem::take(&mut line));
            }
        });
        let mut monitor = Self {
            lines,
            probe,
            marks: 0,
        };
        monitor.mark().await;
        monitor
    }

    /// Sends a marker and waits until MONITOR has reported it, so everything before it is in.
    async fn mark(&mut self) -> String {
        self.marks += 1;
        let marker = format!("monitor-mark-{}", self.marks);
        let _: String = self.probe.echo(marker.as_str()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(&marker))
            {
                return marker;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("MONITOR never reported {marker}");
    }

    /// The commands received since the previous call (or since the monitor started).
    pub async fn take(&mut self) -> Received {
        let marker = self.mark().await;
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        let seen = lines
            .into_iter()
            .filter(|line| line.starts_with('+') && !line.contains("monitor-mark-"))
            .filter_map(|line| {
                let from_script = line.contains(" lua]");
                let name = line.split('"').nth(1)?.to_ascii_lowercase();
                Some(Seen {
                    from_script,
                    name,
                    line,
                })
            })
            .collect();
        let _ = marker;
        Received(seen)
    }
}

/// A response, with the parts tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The `Set-Cookie` header, if the response has one.
    pub fn set_cookie(&self) -> Option<&str> {
        self.headers
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap())
    }
}

/// A browser-like client: keeps the session cookie the app sets and sends it back.
#[derive(Clone)]
pub struct Browser {
    app: Router,
    pub cookie: Option<String>,
    cookie_name: String,
}

impl Browser {
    pub fn new(app: Router) -> Self {
        Self {
            app,
            cookie: None,
            cookie_name: "sid".into(),
        }
    }

    pub fn with_cookie(app: Router, cookie: Option<String>) -> Self {
        Self {
            cookie,
            ..Self::new(app)
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send("GET", path, "", None).await
    }

    pub async fn put(&mut self, path: &str, body: &str) -> Reply {
        self.send("PUT", path, body, None).await
    }

    pub async fn delete(&mut self, path: &str) -> Reply {
        self.send("DELETE", path, "", None).await
    }

    pub async fn post_form(&mut self, path: &str, form: &str) -> Reply {
        self.send(
            "POST",
            path,
            form,
            Some("application/x-www-form-urlencoded"),
        )
        .await
    }

    /// Sends a request with exactly these `Cookie` header values (raw bytes), keeping nothing.
    pub async fn send_raw_cookies(&self, path: &str, cookies: &[&[u8]]) -> Reply {
        let mut request = Request::get(path);
        for cookie in cookies {
            request = request.header(header::COOKIE, *cookie);
        }
        call(&self.app, request.body(Body::empty()).unwrap()).await
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
        content_type: Option<&str>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, format!("{}={cookie}", self.cookie_name));
        }
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let reply = call(
            &self.app,
            request.body(Body::from(body.to_owned())).unwrap(),
        )
        .await;
        if let Some(set) = reply.set_cookie() {
            let parsed = cookie::Cookie::parse(set.to_owned()).unwrap();
            let removed = parsed.max_age() == Some(time::Duration::ZERO);
            self.cookie = (!removed).then(|| parsed.value().to_owned());
        }
        reply
    }
}

async fn call(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// The demo's routes under `layer`, plus test-only routes for behaviours the contract has no route
/// for: a handler that fails after writing, and handlers that wait for a signal mid-request.
pub fn app(layer: SessionLayer, gate: Gate) -> Router {
    use axum::routing::{get, put};
    use axum_redis_session::Session;

    let fail = get(|session: Session| async move {
        session.insert("count", 1000_u64).await.unwrap();
        StatusCode::INTERNAL_SERVER_ERROR
    });
    let read_gate = gate.clone();
    let slow_read_write = get(move |session: Session| async move {
        let count = session
            .get::<u64>("count")
            .await
            .unwrap_or_default()
            .unwrap_or(0);
        read_gate.pass().await;
        session.insert("count", count + 1).await.unwrap();
        (count + 1).to_string()
    });
    let slow_write = put(move |session: Session, body: String| async move {
        gate.pass().await;
        session.insert("slow", body).await.unwrap();
        StatusCode::NO_CONTENT
    });
    let extra = Router::new()
        .route("/test/fail", fail)
        .route("/test/slow-counter", slow_read_write)
        .route("/test/slow-put", slow_write)
        .layer(layer.clone());
    demo::app(layer).merge(extra)
}

/// Lets a test hold a handler mid-request: the handler signals it has arrived, then waits to be let go.
#[derive(Clone, Default)]
pub struct Gate {
    arrived: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl Gate {
    async fn pass(&self) {
        self.arrived.notify_one();
        self.release.notified().await;
    }

    pub async fn wait_arrival(&self) {
        self.arrived.notified().await;
    }

    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// The cookie's token, as another language would read it, and its Redis key.
pub fn session_key(prefix: &str, token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// `Cookie` headers that must be treated as no session: malformed, oversized, non-UTF-8, duplicated
/// (even with a valid id), wrong-case, and a flood of unrelated cookies.
pub fn hostile_cookies(valid_token: &str) -> Vec<Vec<u8>> {
    vec![
        b"sid=".to_vec(),
        b"sid=not-a-token".to_vec(),
        b"sid=../../etc/passwd".to_vec(),
        b"sid=\xff\xfe\xfd".to_vec(),
        format!("sid={}", "a".repeat(8192)).into_bytes(),
        format!("sid={valid_token}; sid={valid_token}").into_bytes(),
        format!("sid={}", valid_token.to_uppercase()).into_bytes(),
        (0..2000)
            .map(|i| format!("c{i}=v; "))
            .collect::<String>()
            .into_bytes(),
    ]
}

//! `redis-server` processes of our own.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::client::ClientKillFilter;

use crate::Service;

/// A `redis-server` (or `redis-sentinel`) of our own on a free loopback port, in a temporary
/// directory, stopped by its PID when dropped.
pub struct RedisServer {
    pub port: u16,
    // Before `dir`: the server stops before its directory is removed.
    process: Service,
    dir: tempfile::TempDir,
    /// Extra `redis-cli` arguments to reach it (TLS).
    cli: Vec<String>,
    program: String,
    args: Vec<String>,
}

fn launch(program: &str, args: &[String], dir: &std::path::Path, port: u16) -> Service {
    let child = Command::new(program)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} must be installed (apt-get install redis-server redis-sentinel): {e}")
        });
    Service::new(program, child, port, String::new)
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
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]
        .into_iter()
        .chain(["--appendonly", "no"])
        .map(String::from)
        .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::spawn("redis-server", port, args, Vec::new())
    }

    /// Runs `program` with `args` in a temporary directory of its own.
    pub fn spawn(program: &str, port: u16, args: Vec<String>, cli: Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let process = launch(program, &args, dir.path(), port);
        let server = Self {
            port,
            process,
            dir,
            cli,
            program: program.to_owned(),
            args,
        };
        server.wait_until_ready();
        server
    }

    /// Stops the server and starts it again on the same port, in the same directory (so with its
    /// AOF or RDB files).
    pub fn restart(&mut self) {
        self.stop();
        self.process = launch(&self.program, &self.args, self.dir.path(), self.port);
        self.wait_until_ready();
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server, by its PID.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(&self.cli)
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli must be installed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits for PONG rather than a listening port: a restarted server listens while it still
    /// loads its files, and answers LOADING meanwhile.
    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["ping"]).starts_with("PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server on port {} did not start", self.port);
    }

    /// Stops the server by its PID and waits for it to exit.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// A fred client for inspecting what the layer wrote.
    pub async fn probe(&self) -> Client {
        let client = Builder::from_config(Config::from_url(&self.url()).unwrap())
            .build()
            .unwrap();
        client.init().await.expect("probe connects");
        client
    }
}

/// A port nothing listens on right now.
///
/// Never the same port twice in one process (tests run in parallel, and a port released by one
/// check could be handed to two servers), and never above 55535, so that a cluster node's bus port
/// (its port + 10000 by Redis's convention) is a valid port too.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if port <= 55535 && !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Closes every client connection of the server `client` is connected to but `client`'s own
/// (`CLIENT KILL ID`, each in turn); returns how many it closed.
pub async fn kill_other_clients(client: &Client) -> usize {
    let own: i64 = client.client_id().await.unwrap();
    let list: String = client
        .client_list::<String, String>(None, None)
        .await
        .unwrap();
    let mut killed = 0;
    for id in list.lines().filter_map(|line| {
        line.split(' ')
            .find_map(|field| field.strip_prefix("id="))
            .and_then(|id| id.parse::<i64>().ok())
    }) {
        if id != own {
            let n: i64 = client
                .client_kill(vec![ClientKillFilter::ID(id.to_string())])
                .await
                .unwrap_or(0);
            killed += n as usize;
        }
    }
    killed
}

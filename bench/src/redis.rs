//! The benchmark's private `redis-server` (testkit's: a free loopback port, stopped by its PID),
//! with the counters the report needs.

use std::collections::BTreeMap;
use std::process::Command;

use fred::prelude::*;
use fred::types::InfoKind;
use testkit::{Monitor, Received, RedisServer};

/// One command's counters in `INFO commandstats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stat {
    pub calls: u64,
    /// Microseconds Redis spent executing it (a script's whole run for `evalsha`), not the I/O.
    pub usec: u64,
    pub failed: u64,
}

impl Stat {
    /// What happened between `before` and `self`.
    pub fn since(self, before: Self) -> Self {
        Self {
            calls: self.calls - before.calls,
            usec: self.usec - before.usec,
            failed: self.failed - before.failed,
        }
    }

    /// Mean execution time per call, µs.
    pub fn usec_per_call(self) -> Option<f64> {
        (self.calls > 0).then(|| self.usec as f64 / self.calls as f64)
    }
}

/// What Redis had done by a moment of a run.
pub struct Snapshot {
    pub commands: BTreeMap<String, Stat>,
    pub cpu_us: f64,
}

impl Snapshot {
    /// Commands executed between `before` and `self`.
    pub fn commands_since(&self, before: &Self) -> u64 {
        self.commands
            .iter()
            .map(|(k, v)| v.calls - before.commands.get(k).map_or(0, |b| b.calls))
            .sum()
    }
}

/// A command that Redis served, with its throughput and execution time.
pub struct Floor {
    pub name: String,
    pub rps: f64,
    pub usec_per_call: f64,
}

pub struct PrivateRedis {
    server: RedisServer,
    client: Client,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let server = RedisServer::start();
        let client = server.probe().await;
        Self { server, client }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub async fn flushall(&self) {
        let _: () = self.client.flushall(false).await.unwrap();
    }

    /// The client the benchmark itself talks to Redis through (one connection).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Commands Redis has executed so far, by name (Lua inner calls included), without `INFO`.
    pub async fn commandstats(&self) -> BTreeMap<String, Stat> {
        let text: String = self
            .client
            .info(Some(InfoKind::CommandStats))
            .await
            .unwrap();
        text.lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let mut stat = Stat::default();
                for pair in rest.trim().split(',') {
                    let (key, value) = pair.split_once('=')?;
                    let value = || value.parse().ok();
                    match key {
                        "calls" => stat.calls = value()?,
                        "usec" => stat.usec = value()?,
                        "failed_calls" => stat.failed = value()?,
                        _ => {}
                    }
                }
                Some((name.to_owned(), stat))
            })
            .filter(|(name, _)| name != "info")
            .collect()
    }

    /// Redis's own CPU time so far, user and system, in µs (`INFO cpu`): parsing, Lua and socket
    /// work alike.
    pub async fn cpu_us(&self) -> f64 {
        let text: String = self.client.info(Some(InfoKind::Cpu)).await.unwrap();
        let seconds = |field: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("INFO cpu has no {field}"))
        };
        (seconds("used_cpu_user") + seconds("used_cpu_sys")) * 1e6
    }

    /// One field of a hash, as text.
    pub async fn hget(&self, key: &str, field: &str) -> String {
        self.client.hget(key, field).await.unwrap()
    }

    /// Redis's own CPU (`INFO cpu`), µs, per round of `commands` (each a command and its arguments),
    /// over `n` rounds piped by `redis-cli --pipe` on one connection: the commands' parsing and
    /// execution, with the socket work of a round trip shared out among many.
    pub async fn cpu_per_round(&self, n: usize, commands: &[Vec<String>]) -> f64 {
        let mut resp = Vec::new();
        for _ in 0..n {
            for command in commands {
                resp.extend(format!("*{}\r\n", command.len()).bytes());
                for arg in command {
                    resp.extend(format!("${}\r\n{arg}\r\n", arg.len()).bytes());
                }
            }
        }
        let before = self.cpu_us().await;
        let mut pipe = Command::new("redis-cli")
            .args(["-p", &self.server.port.to_string(), "--pipe"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("redis-cli (apt-get install redis-tools)");
        let mut stdin = pipe.stdin.take().unwrap();
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &resp));
        let output = pipe.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("errors: 0,"),
            "a piped command failed: {text}"
        );
        (self.cpu_us().await - before) / n as f64
    }

    /// Commands executed and CPU used so far.
    pub async fn snapshot(&self) -> Snapshot {
        Snapshot {
            commands: self.commandstats().await,
            cpu_us: self.cpu_us().await,
        }
    }

    /// Closes every client connection but the benchmark's own; returns how many it closed.
    pub async fn kill_other_clients(&self) -> usize {
        testkit::kill_other_clients(&self.client).await
    }

    /// Runs `work` with `MONITOR` attached and returns every command Redis received meanwhile.
    pub async fn monitor(&self, work: impl std::future::Future<Output = ()>) -> Received {
        let mut monitor = Monitor::start(&self.server).await;
        work.await;
        monitor.take().await
    }

    /// What this Redis serves with nothing else in the way: `redis-benchmark` at 32 connections for
    /// a plain GET, the crate's read (HGETALL of a session-sized hash) and a plain HSET of one field
    /// of it. For each, requests/s and Redis's execution time per call (`INFO commandstats`).
    pub async fn floor(&self) -> Vec<Floor> {
        let _: () = self
            .client
            .hset(
                "floor:session",
                [("$created", "1"), ("count", "5"), ("cart", "[\"a\",\"b\"]")],
            )
            .await
            .unwrap();
        let strings = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        let cases = [
            ("GET", strings(&["get", "floor:string"])),
            ("HGETALL", strings(&["hgetall", "floor:session"])),
            (
                "HSET (one field)",
                strings(&["hset", "floor:session", "count", "6"]),
            ),
        ];
        let mut out = Vec::new();
        for (name, args) in cases {
            let command = args[0].to_ascii_lowercase();
            let before = self.commandstats().await;
            let output = Command::new("redis-benchmark")
                .args([
                    "-p",
                    &self.server.port.to_string(),
                    "-c",
                    "32",
                    "-n",
                    "100000",
                    "-q",
                ])
                .args(&args)
                .output()
                .expect("redis-benchmark (apt-get install redis-tools)");
            let after = self.commandstats().await;
            let stat = after[&command].since(before.get(&command).copied().unwrap_or_default());
            assert_eq!(stat.failed, 0, "{name}: redis-benchmark's calls failed");
            let text = String::from_utf8_lossy(&output.stdout);
            let last = text.rsplit('\r').next().unwrap_or_default();
            // "<command>: 76365.02 requests per second, p50=…": the command may contain ": " itself.
            let rps = last
                .split(" requests per second")
                .next()
                .and_then(|head| head.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0);
            out.push(Floor {
                name: name.to_owned(),
                rps,
                usec_per_call: stat.usec_per_call().unwrap_or(0.0),
            });
        }
        out
    }
}

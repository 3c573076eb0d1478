//! The benchmark's private `redis-server` (testkit's: a free loopback port, stopped by its PID),
//! with the counters the report needs.

use std::collections::BTreeMap;
use std::process::Command;

use fred::prelude::*;
use fred::types::InfoKind;
use testkit::{Monitor, RedisServer};

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

    /// Commands Redis has executed so far, by name (Lua inner calls included), without `INFO`.
    pub async fn commandstats(&self) -> BTreeMap<String, u64> {
        let text: String = self
            .client
            .info(Some(InfoKind::CommandStats))
            .await
            .unwrap();
        text.lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .filter(|(name, _)| name != "info")
            .collect()
    }

    /// Runs `work` with `MONITOR` attached and returns (commands clients sent, commands scripts ran).
    pub async fn profile(&self, work: impl std::future::Future<Output = ()>) -> (u64, u64) {
        let mut monitor = Monitor::start(&self.server).await;
        work.await;
        let received = monitor.take().await;
        let top = received.round_trips();
        (top as u64, (received.0.len() - top) as u64)
    }

    /// What this Redis serves with nothing else in the way: `redis-benchmark` at 32 connections for
    /// a plain GET, the crate's read (HGETALL of a session-sized hash) and its save script on it.
    pub async fn floor(&self) -> Vec<(String, f64)> {
        let lua = concat!(
            include_str!("../../src/store/lib.lua"),
            include_str!("../../src/store/save.lua")
        );
        let sha: String = self.client.script_load(lua).await.unwrap();
        let _: () = self
            .client
            .hset(
                "floor:session",
                [("$created", "1"), ("count", "5"), ("cart", "[\"a\",\"b\"]")],
            )
            .await
            .unwrap();
        let _: () = self
            .client
            .pexpire("floor:session", 7_200_000, None)
            .await
            .unwrap();
        let cases: [(&str, Vec<&str>); 3] = [
            ("GET", vec!["get", "floor:string"]),
            ("HGETALL", vec!["hgetall", "floor:session"]),
            (
                "EVALSHA save.lua (one field)",
                vec![
                    "evalsha",
                    &sha,
                    "1",
                    "floor:session",
                    "update",
                    "7200000",
                    "",
                    "65536",
                    "floor:",
                    "x",
                    "",
                    "0",
                    "",
                    "1",
                    "6480000",
                    "1",
                    "count",
                    "6",
                ],
            ),
        ];
        cases
            .into_iter()
            .map(|(name, args)| {
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
                let text = String::from_utf8_lossy(&output.stdout);
                let last = text.rsplit('\r').next().unwrap_or_default();
                // "<command>: 76365.02 requests per second, p50=…": the command may contain ": " itself.
                let rps = last
                    .split(" requests per second")
                    .next()
                    .and_then(|head| head.rsplit(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0.0);
                (name.to_owned(), rps)
            })
            .collect()
    }
}

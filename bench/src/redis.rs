//! The benchmark's private `redis-server`: started on a free loopback port and stopped by its PID,
//! with the counters the report needs.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::InfoKind;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct PrivateRedis {
    pub port: u16,
    child: Child,
    dir: PathBuf,
    client: Client,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("session-bench-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let client =
            Builder::from_config(Config::from_url(&format!("redis://127.0.0.1:{port}")).unwrap())
                .build()
                .unwrap();
        let started = Instant::now();
        while client.init().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            port,
            child,
            dir,
            client,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
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
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(b"MONITOR\r\n").await.unwrap();
        let mut reader = BufReader::new(read);
        let mut ok = String::new();
        reader.read_line(&mut ok).await.unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let tap = tokio::spawn(async move {
            let mut line = String::new();
            while reader.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                let done = line.contains("profile-done");
                sink.lock().unwrap().push(std::mem::take(&mut line));
                if done {
                    break;
                }
            }
        });
        work.await;
        let _: String = self.client.echo("profile-done").await.unwrap();
        tap.await.unwrap();
        drop(write);
        let lines = lines.lock().unwrap();
        let commands = lines
            .iter()
            .filter(|l| l.starts_with('+') && !l.contains("profile-done"));
        let (mut top, mut inner) = (0, 0);
        for line in commands {
            if line.contains(" lua]") {
                inner += 1;
            } else {
                top += 1;
            }
        }
        (top, inner)
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
                        &self.port.to_string(),
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

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! What holding sessions costs in memory: the demo's resident set after `SESSIONS` sessions were
//! created and each read once more (so that, with the near-cache on, each is cached).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::coherence::cache_hits;
use crate::load::Client;
use crate::redis::PrivateRedis;
use crate::Server;

pub const SESSIONS: usize = 100_000;
const CONCURRENCY: usize = 32;
/// Sessions each client reads a third time, to check how many of them the cache holds.
const SAMPLE_PER_CLIENT: usize = 32;
pub const SAMPLE: usize = SAMPLE_PER_CLIENT * CONCURRENCY;

/// One demo's resident memory, before and after the traffic.
pub struct Rss {
    pub server: &'static str,
    pub start_kib: u64,
    pub after_kib: u64,
    /// Of [`SAMPLE`] sessions read again at the end, how many the near-cache served.
    pub sample_hits: u64,
    pub elapsed: Duration,
}

/// `VmRSS` of a process, KiB; an error, never a zero, when it cannot be read (a zero would read as
/// a result).
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse().ok())
        .filter(|&kb| kb > 0)
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Starts `name`, creates [`SESSIONS`] sessions (`GET /counter` without a cookie) and reads each
/// once more (`GET /counter/peek`), `CONCURRENCY` clients at a time, then reads its RSS.
pub async fn measure(name: &'static str, target: &Path, redis: &PrivateRedis) -> Rss {
    redis.flushall().await;
    let server = Server::start(name, target, &redis.url());
    let started = Instant::now();
    let mut metrics = Client::connect(server.addr).await;
    // Let the server finish starting (the near-cache's tracking set-up) before the baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_kib = rss_kib(server.pid()).unwrap_or_else(|e| panic!("{e}"));
    let addr = server.addr;
    let users: Vec<_> = (0..CONCURRENCY)
        .map(|user| {
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let mut cookies = Vec::new();
                for _ in (user..SESSIONS).step_by(CONCURRENCY) {
                    client.cookie = None;
                    let reply = client.get("/counter").await;
                    assert!(reply.status.is_success(), "session creation failed");
                    cookies.push(client.cookie.take().expect("a session cookie"));
                }
                for cookie in &cookies {
                    client.cookie = Some(cookie.clone());
                    let reply = client.get("/counter/peek").await;
                    assert_eq!(reply.body, "1", "a created session reads back");
                }
                (client, cookies)
            })
        })
        .collect();
    let mut held = Vec::new();
    for user in users {
        held.push(user.await.unwrap());
    }
    let hits_before = cache_hits(&mut metrics).await;
    for (client, cookies) in &mut held {
        for cookie in cookies.iter().take(SAMPLE_PER_CLIENT) {
            client.cookie = Some(cookie.clone());
            client.get("/counter/peek").await;
        }
    }
    let sample_hits = cache_hits(&mut metrics).await - hits_before;
    let after_kib = rss_kib(server.pid()).unwrap_or_else(|e| panic!("{e}"));
    Rss {
        server: name,
        start_kib,
        after_kib,
        sample_hits,
        elapsed: started.elapsed(),
    }
}

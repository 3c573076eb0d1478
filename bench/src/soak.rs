//! The soak run: mixed traffic against the demo for a bounded time, then every virtual user checks
//! that its session holds exactly what it wrote. Reports requests, errors, lost updates and the
//! demo's resident memory at the start and the end, and fails if any of them is off.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hyper::Method;

use crate::load::Client;
use crate::memory::rss_kib;
use crate::redis::PrivateRedis;
use crate::Server;

/// What one virtual user did and what it found at the end.
#[derive(Default)]
struct Tally {
    requests: u64,
    errors: u64,
    lost: u64,
}

/// One user's mix: mostly reads, some counter increments, some key writes and reads.
async fn user(addr: SocketAddr, until: Instant) -> Tally {
    let mut client = Client::connect(addr).await;
    let mut tally = Tally::default();
    let mut count = 0_u64;
    let mut written: HashMap<String, String> = HashMap::new();
    let mut step = 0_u64;
    while Instant::now() < until {
        step += 1;
        let key = format!("k{}", step % 20);
        let ok = match step % 10 {
            0..=5 => client.get("/counter/peek").await.status.is_success(),
            6 | 7 => {
                let ok = client.get("/counter").await.status.is_success();
                count += u64::from(ok);
                ok
            }
            8 => {
                let value = step.to_string();
                let ok = client
                    .send(Method::PUT, &format!("/kv/{key}"), &value)
                    .await
                    .status
                    .is_success();
                if ok {
                    written.insert(key, value);
                }
                ok
            }
            _ => {
                let status = client.get(&format!("/kv/{key}")).await.status;
                status.is_success() || (status == 404 && !written.contains_key(&key))
            }
        };
        tally.requests += 1;
        tally.errors += u64::from(!ok);
    }
    let peek = client.get("/counter/peek").await.body;
    tally.lost += u64::from(peek.trim() != count.to_string());
    for (key, value) in &written {
        tally.lost += u64::from(client.get(&format!("/kv/{key}")).await.body != *value);
    }
    tally
}

/// Runs the soak; returns whether it passed.
pub async fn run(target: &Path, duration: Duration, concurrency: usize) -> bool {
    let redis = PrivateRedis::start().await;
    let server = Server::start("axum-redis-session", target, &redis.url());
    let pid = server.pid();
    // Memory is measured once the allocator has seen the traffic's shape.
    let warmup = Duration::from_secs(5).min(duration / 4);
    let started = Instant::now();
    let until = started + duration;
    let users: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(user(server.addr, until)))
        .collect();
    tokio::time::sleep(warmup).await;
    let rss_start = rss_kib(pid);
    let mut total = Tally::default();
    for u in users {
        let t = u.await.unwrap();
        total.requests += t.requests;
        total.errors += t.errors;
        total.lost += t.lost;
    }
    let rss_end = rss_kib(pid);
    let growth = (rss_end as f64 - rss_start as f64) / rss_start.max(1) as f64 * 100.0;
    let passed = total.errors == 0 && total.lost == 0 && growth <= 10.0;
    println!(
        "soak: {:.0} s at c={concurrency}: {} requests ({:.0}/s), {} errors, {} lost updates, demo RSS {} KiB -> {} KiB ({growth:+.1} %): {}",
        started.elapsed().as_secs_f64(),
        total.requests,
        total.requests as f64 / started.elapsed().as_secs_f64(),
        total.errors,
        total.lost,
        rss_start,
        rss_end,
        if passed { "PASS" } else { "FAIL" }
    );
    passed
}

//! The soak run: mixed traffic against the demo for a bounded time, with several clients sharing
//! each session (each on its own connection, writing keys no other client writes), then every client
//! checks that the session holds exactly what it wrote. Reports requests, errors, lost updates and
//! the demo's resident memory at the start and the end, and fails if any of them is off, or if the
//! memory cannot be read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hyper::Method;

use crate::load::Client;
use crate::memory::rss_kib;
use crate::redis::PrivateRedis;
use crate::Server;

/// Clients sharing one session: a lost update can only happen where requests race on a session.
const CLIENTS_PER_SESSION: usize = 4;
/// Keys each client cycles through.
const KEYS_PER_CLIENT: u64 = 20;

/// What one client did and what it found.
#[derive(Default)]
struct Tally {
    requests: u64,
    errors: u64,
    /// Writes acknowledged and then not found: a read of its own key that did not give back its
    /// last acknowledged value, during the run or at the end, or a counter that is off.
    lost: u64,
    /// Keys checked at the end.
    checked: u64,
}

/// One client of a shared session. Client 0 of each session (the one that created it) also counts
/// the session's counter, which no other client increments; every client writes and reads back
/// keys of its own (`c{client}-k{n}`) in the shared session.
async fn user(mut client: Client, me: usize, counts: bool, until: Instant) -> Tally {
    let mut tally = Tally::default();
    // The counter stands at 1: the request that created the session counted once.
    let mut count = 1_u64;
    let mut written: HashMap<String, String> = HashMap::new();
    let mut step = 0_u64;
    while Instant::now() < until {
        step += 1;
        // Every tenth step writes the next key; the step after it reads that key back.
        let key = format!("c{me}-k{}", (step / 10) % KEYS_PER_CLIENT);
        let ok = match step % 10 {
            0..=5 => client.get("/counter/peek").await.status.is_success(),
            6 | 7 if counts => {
                let ok = client.get("/counter").await.status.is_success();
                count += u64::from(ok);
                ok
            }
            6 | 7 => client.get("/counter/peek").await.status.is_success(),
            8 => {
                let value = step.to_string();
                let ok = client
                    .send(Method::PUT, &format!("/kv/{key}"), &value)
                    .await
                    .status
                    == 204;
                if ok {
                    written.insert(key, value);
                }
                ok
            }
            _ => {
                let reply = client.get(&format!("/kv/{key}")).await;
                match written.get(&key) {
                    Some(value) => {
                        tally.lost += u64::from(reply.status == 200 && reply.body != *value);
                        reply.status == 200
                    }
                    None => reply.status == 404,
                }
            }
        };
        tally.requests += 1;
        tally.errors += u64::from(!ok);
    }
    if counts {
        let peek = client.get("/counter/peek").await.body;
        tally.lost += u64::from(peek.trim() != count.to_string());
    }
    for (key, value) in &written {
        tally.lost += u64::from(client.get(&format!("/kv/{key}")).await.body != *value);
        tally.checked += 1;
    }
    tally
}

/// The clients of one session: the first creates it, the others take its cookie.
async fn session_clients(addr: SocketAddr) -> Vec<Client> {
    let mut first = Client::connect(addr).await;
    let created = first.get("/counter").await;
    assert!(
        created.status.is_success() && first.cookie.is_some(),
        "the demo creates a session"
    );
    let mut clients = vec![];
    for _ in 1..CLIENTS_PER_SESSION {
        let mut client = Client::connect(addr).await;
        client.cookie = first.cookie.clone();
        clients.push(client);
    }
    clients.insert(0, first);
    clients
}

/// Runs the soak; returns whether it passed.
pub async fn run(target: &Path, duration: Duration, concurrency: usize) -> bool {
    let redis = PrivateRedis::start().await;
    let server = Server::start("axum-redis-session", target, &redis.url());
    let pid = server.pid();
    let sessions = concurrency.div_ceil(CLIENTS_PER_SESSION);
    // Memory is measured once the allocator has seen the traffic's shape.
    let warmup = Duration::from_secs(5).min(duration / 4);
    let mut clients = Vec::new();
    for _ in 0..sessions {
        clients.extend(session_clients(server.addr).await.into_iter().enumerate());
    }
    let started = Instant::now();
    let until = started + duration;
    let users: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(me, (rank, client))| tokio::spawn(user(client, me, rank == 0, until)))
        .collect();
    tokio::time::sleep(warmup).await;
    // Resident memory every tenth of the run: a leak climbs all along, while an allocator settling
    // under load only steps up and down. So the run fails when even the lowest sample of its second
    // half is more than 10 % above the highest of its first half.
    let sampler = tokio::spawn(async move {
        let mut samples = vec![rss_kib(pid)];
        while Instant::now() + duration / 10 < until {
            tokio::time::sleep(duration / 10).await;
            samples.push(rss_kib(pid));
        }
        samples.push(rss_kib(pid));
        samples.into_iter().collect::<Result<Vec<u64>, String>>()
    });
    let mut total = Tally::default();
    for u in users {
        let t = u.await.unwrap();
        total.requests += t.requests;
        total.errors += t.errors;
        total.lost += t.lost;
        total.checked += t.checked;
    }
    let samples = sampler.await.unwrap();
    let (rss, growth) = match &samples {
        Ok(samples) if samples.len() >= 2 => {
            let (early, late) = samples.split_at(samples.len() / 2);
            let early_max = *early.iter().max().unwrap();
            let late_min = *late.iter().min().unwrap();
            let growth = (late_min as f64 - early_max as f64) / early_max as f64 * 100.0;
            (
                format!(
                    "{} KiB -> {} KiB, second half's lowest {growth:+.1} % over first half's highest (samples {samples:?})",
                    samples[0],
                    samples[samples.len() - 1]
                ),
                Some(growth),
            )
        }
        Ok(samples) => (format!("too few samples: {samples:?}"), None),
        Err(e) => (format!("unknown: {e}"), None),
    };
    let passed = total.errors == 0
        && total.lost == 0
        && total.checked > 0
        && growth.is_some_and(|g| g <= 10.0);
    println!(
        "soak: {:.0} s, {} clients on {sessions} sessions ({CLIENTS_PER_SESSION} per session): {} requests ({:.0}/s), {} errors, {} lost updates ({} keys checked at the end), demo RSS {rss}: {}",
        started.elapsed().as_secs_f64(),
        sessions * CLIENTS_PER_SESSION,
        total.requests,
        total.requests as f64 / started.elapsed().as_secs_f64(),
        total.errors,
        total.lost,
        total.checked,
        if passed { "PASS" } else { "FAIL" }
    );
    passed
}

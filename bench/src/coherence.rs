//! How soon a cached setup sees a write made elsewhere: two instances of one server on one Redis,
//! a session hot on instance 1, written on instance 2, read on instance 1 until the new value shows.
//! For our near-cache also: what it serves right after a plain Redis client wrote the session (the
//! invalidation racing the next read), after its Redis connections were killed (and the session
//! written meanwhile by a plain client), and after `FLUSHALL`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use fred::prelude::*;
use hdrhistogram::Histogram;

use crate::load::Client as HttpClient;
use crate::redis::PrivateRedis;
use crate::Server;

/// Tries of the two-instance run, and how long one try waits for the new value.
pub const TRIES: usize = 500;
pub const GIVE_UP: Duration = Duration::from_secs(2);
/// A setup that never sees the write would take `TRIES` × `GIVE_UP`: its tries stop at this budget.
pub const BUDGET: Duration = Duration::from_secs(20);
/// Tries of each disruption (connections killed, `FLUSHALL`), and how long one waits for Redis.
pub const DISRUPTIONS: usize = 50;
const DISRUPTION_LIMIT: Duration = Duration::from_secs(5);

/// What the two-instance run saw.
pub struct Coherence {
    pub server: &'static str,
    pub tries: usize,
    /// Whether the tries stopped at [`BUDGET`] rather than at [`TRIES`].
    pub budget_hit: bool,
    /// Reads on instance 1 that answered an old value after instance 2's write had been answered.
    pub stale_reads: u64,
    pub tries_with_stale: usize,
    /// Tries whose new value instance 1 never answered within [`GIVE_UP`].
    pub never_seen: usize,
    /// From the write's response to the response of the first read that answered the new value, µs.
    pub seen_after: Histogram<u64>,
    /// Reads that failed (not a 200).
    pub errors: u64,
    /// Instance 1's near-cache hits over the run (ours only; `/metrics`).
    pub hits: Option<u64>,
}

/// What instance 1 answered after a disruption.
pub struct Disruption {
    pub what: &'static str,
    pub reads: u64,
    /// Answers with the session's old value, after the disruption was complete.
    pub stale: u64,
    /// 503s (Redis unreachable while reconnecting): not stale.
    pub unavailable: u64,
    /// Any other failure.
    pub errors: u64,
    /// Tries whose new value was not answered within the limit.
    pub never_seen: usize,
    /// Client connections closed per try (kill only).
    pub killed: usize,
    /// For each stale read: µs from the disruption's completion to the stale answer.
    pub stale_after_us: Vec<u64>,
}

/// The Redis key of the session a cookie (`name=value`) names.
pub fn session_key(cookie: &str) -> String {
    let value = cookie.split_once('=').map_or(cookie, |(_, v)| v);
    testkit::session_key("session:", value)
}

/// The near-cache hits an instance of ours reports on `/metrics`.
pub async fn cache_hits(metrics: &mut HttpClient) -> u64 {
    let text = metrics.get("/metrics").await.body;
    text.lines()
        .find(|l| l.starts_with("session_near_cache_hits_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .expect("session_near_cache_hits_total on /metrics")
}

/// Peeks until one is served from instance's near-cache (bounded): the session is hot there.
async fn make_hot(client: &mut HttpClient, metrics: &mut HttpClient) {
    let deadline = Instant::now() + DISRUPTION_LIMIT;
    loop {
        let before = cache_hits(metrics).await;
        let reply = client.get("/counter/peek").await;
        if reply.status.is_success() && cache_hits(metrics).await > before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the session never became a near-cache hit"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two instances of `name` on one Redis; see the module's documentation.
pub async fn two_instances(name: &'static str, target: &Path, redis: &PrivateRedis) -> Coherence {
    redis.flushall().await;
    let one = Server::start(name, target, &redis.url());
    let two = Server::start(name, target, &redis.url());
    let ours = name.starts_with("axum-redis-session");
    let mut metrics = HttpClient::connect(one.addr).await;
    let hits_before = if ours {
        Some(cache_hits(&mut metrics).await)
    } else {
        None
    };
    let mut reader = HttpClient::connect(one.addr).await;
    assert!(reader.get("/counter").await.status.is_success());
    let mut writer = HttpClient::connect(two.addr).await;
    writer.cookie = reader.cookie.clone();
    let mut result = Coherence {
        server: name,
        tries: 0,
        budget_hit: false,
        stale_reads: 0,
        tries_with_stale: 0,
        never_seen: 0,
        seen_after: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
        errors: 0,
        hits: None,
    };
    let started = Instant::now();
    while result.tries < TRIES {
        if started.elapsed() >= BUDGET {
            result.budget_hit = true;
            break;
        }
        result.tries += 1;
        for _ in 0..3 {
            reader.get("/counter/peek").await;
        }
        let written = writer.get("/counter").await;
        assert!(written.status.is_success(), "write on instance 2 failed");
        let written_at = Instant::now();
        let mut stale = 0;
        loop {
            let reply = reader.get("/counter/peek").await;
            if !reply.status.is_success() {
                result.errors += 1;
            } else if reply.body == written.body {
                result
                    .seen_after
                    .saturating_record(written_at.elapsed().as_micros() as u64);
                break;
            } else {
                stale += 1;
            }
            if written_at.elapsed() >= GIVE_UP {
                result.never_seen += 1;
                break;
            }
        }
        result.stale_reads += stale;
        result.tries_with_stale += usize::from(stale > 0);
    }
    if let Some(before) = hits_before {
        result.hits = Some(cache_hits(&mut metrics).await - before);
    }
    result
}

/// Reads on `client` until it answers `expected` (bounded), counting what came before; `since`
/// is when the disruption was complete.
async fn read_until(
    client: &mut HttpClient,
    expected: &str,
    since: Instant,
    tally: &mut Disruption,
) {
    loop {
        let reply = client.get("/counter/peek").await;
        tally.reads += 1;
        if reply.status == 503 {
            tally.unavailable += 1;
        } else if !reply.status.is_success() {
            tally.errors += 1;
        } else if reply.body == expected {
            return;
        } else {
            tally.stale += 1;
            tally
                .stale_after_us
                .push(since.elapsed().as_micros() as u64);
        }
        if since.elapsed() >= DISRUPTION_LIMIT {
            tally.never_seen += 1;
            return;
        }
        // 503s come fast; give the reconnect a moment rather than spinning.
        if reply.status == 503 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Our near-cache on a single instance, a fresh session hot in its cache for each try: a plain
/// client's `HSET` of the session (the control: only the invalidation's race with the next read),
/// the same after every client connection but the benchmark's was killed, and `FLUSHALL`.
pub async fn disruptions(
    name: &'static str,
    target: &Path,
    redis: &PrivateRedis,
) -> [Disruption; 3] {
    redis.flushall().await;
    let server = Server::start(name, target, &redis.url());
    let mut metrics = HttpClient::connect(server.addr).await;
    let new = |what| Disruption {
        what,
        reads: 0,
        stale: 0,
        unavailable: 0,
        errors: 0,
        never_seen: 0,
        killed: 0,
        stale_after_us: Vec::new(),
    };
    let mut plain = new("none: `HSET <key> count <n>` by a plain client");
    let mut kill = new("`CLIENT KILL` of every client connection but the benchmark's, then `HSET <key> count <n>` by a plain client");
    let mut flush = new("`FLUSHALL`");
    for attempt in 0..2 * DISRUPTIONS {
        // Alternate, so that both see the same machine.
        let killing = attempt % 2 == 1;
        let mut client = fresh_session(server.addr).await;
        let key = session_key(client.cookie.as_deref().unwrap());
        let exists: i64 = redis.client().exists(&key).await.unwrap();
        assert_eq!(exists, 1, "{key} is the session's key");
        make_hot(&mut client, &mut metrics).await;
        if killing {
            kill.killed += redis.kill_other_clients().await;
        }
        let n = 1000 + attempt;
        let _: () = redis
            .client()
            .hset(&key, [("count", n.to_string())])
            .await
            .unwrap();
        let since = Instant::now();
        let tally = if killing { &mut kill } else { &mut plain };
        read_until(&mut client, &n.to_string(), since, tally).await;
    }
    kill.killed /= DISRUPTIONS;
    for _ in 0..DISRUPTIONS {
        let mut client = fresh_session(server.addr).await;
        make_hot(&mut client, &mut metrics).await;
        redis.flushall().await;
        let since = Instant::now();
        read_until(&mut client, "0", since, &mut flush).await;
    }
    [plain, kill, flush]
}

/// A client whose session has been written twice (its count is 2), on a new connection.
async fn fresh_session(addr: SocketAddr) -> HttpClient {
    let mut client = HttpClient::connect(addr).await;
    let deadline = Instant::now() + DISRUPTION_LIMIT;
    // Right after a disruption the server may answer 503 until it has reconnected.
    while client.cookie.is_none() {
        assert!(
            client.get("/counter").await.status.is_success() || Instant::now() < deadline,
            "no session could be created"
        );
        if client.cookie.is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(client.get("/counter").await.status.is_success());
    client
}

//! Test support: the shared `testkit` (real `redis-server` processes and topologies on free
//! loopback ports, a `MONITOR` tap that counts what Redis receives, the Redis key of a cookie),
//! stores on them, a cookie-keeping client that drives the demo's contract, application instances
//! with a near-cache, example binaries run as processes, an nginx in front of them, and headless
//! Chromium driven through `chromedriver`.
#![allow(dead_code, unused_imports, unreachable_pub)] // each test binary uses its own part of this module

#[path = "../../examples/demo.rs"]
pub mod demo;

mod browser;
mod captured;
mod instance;
mod process;
mod proxy;
mod split;
mod squatter;
mod webdriver;

use axum_redis_session::fred::prelude::*;
use axum_redis_session::RedisStore;

pub use browser::{app, app_on, Browser, Gate, Reply, CSRF_TOGETHER, MANY_FIELDS};
pub use captured::Captured;
pub use instance::Instance;
pub use process::{
    example_binary, request, request_with_cookie, request_with_headers, token_of, ExampleProcess,
    RawReply, WireReply,
};
pub use proxy::Nginx;
pub use split::SplitRoute;
pub use squatter::{Squatter, SQUATTER_FIELD};
pub use testkit::{
    free_port, kill_other_clients, monitor_args, session_key, wait_for, Cluster, Monitor, Received,
    RedisServer, Seen, SentinelGroup, TlsFiles, SERVICE,
};
pub use webdriver::{ChromeDriver, Window};

/// A store on a fred pool that is connected before it is returned, reconnecting every 100 ms. Not
/// the policy users get (`RedisStore::connect`'s backs off to 2 s), so fault and failover tests use
/// [`url_store`] instead; this one serves tests where Redis stays up.
pub async fn connected_store(config: Config) -> RedisStore {
    let pool = Builder::from_config(config)
        .set_policy(ReconnectPolicy::new_constant(0, 100))
        .build_pool(2)
        .unwrap();
    pool.init().await.expect("store connects");
    RedisStore::from_pool(pool)
}

/// The store users get: `RedisStore::connect(url)` (a pool of 2 that reconnects forever, 100 ms
/// doubling up to 2 s), with `timeout_ms` as its command timeout. Returns at once, as `connect` does;
/// see [`wait_until_served`] for an app on it to reach Redis.
pub async fn url_store(url: &str, timeout_ms: i64) -> RedisStore {
    RedisStore::connect(url)
        .await
        .expect("the URL parses")
        .with_command_timeout(time::Duration::milliseconds(timeout_ms))
}

/// Valid-shaped session tokens (32 lowercase hex digits of a v4 UUID) that no server issued: a
/// request carrying one makes the store look it up, and writes nothing.
pub fn unissued_token(n: u32) -> String {
    format!("{n:08x}00004000800000000000{n:04x}")[..32].to_owned()
}

/// Waits until `app` reaches its store: `probes` consecutive lookups (each on another key, so on a
/// cluster they reach several masters, and on a pool every connection) answer 200. Writes nothing.
pub async fn wait_until_served(app: &axum::Router, probes: u32, limit: std::time::Duration) {
    let started = std::time::Instant::now();
    let mut n = 0;
    let mut streak = 0;
    while streak < probes {
        n += 1;
        let reply = Browser::with_cookie(app.clone(), Some(unissued_token(n)))
            .get("/counter/peek")
            .await;
        if reply.status == axum::http::StatusCode::OK {
            streak += 1;
        } else {
            streak = 0;
            assert!(
                started.elapsed() < limit,
                "the store did not reach Redis within {limit:?}: {reply:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The demo's routes on `RedisStore::connect(url)` with a 500 ms command timeout, once it serves.
pub async fn app_for(url: &str) -> axum::Router {
    let store = url_store(url, 500).await;
    let app = app(
        axum_redis_session::SessionLayer::new(store),
        Gate::default(),
    );
    wait_until_served(&app, 8, std::time::Duration::from_secs(20)).await;
    app
}

/// A store connected to `server`, ready (connected) before it is returned.
pub async fn store_on(server: &RedisServer) -> RedisStore {
    connected_store(Config::from_url(&server.url()).unwrap()).await
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

/// The session hashes in Redis under the default prefix (not the per-user indexes), sorted.
pub fn session_keys(server: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = server
        .cli(&["--scan", "--pattern", "session:*"])
        .lines()
        .filter(|key| !key.is_empty() && !key.starts_with("session:user:"))
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
}

/// A session's hash without the metadata that every save rewrites (its expiry, version and size).
pub fn content(
    mut hash: std::collections::HashMap<String, String>,
) -> std::collections::HashMap<String, String> {
    for field in ["$expires", "$version", "$size"] {
        hash.remove(field);
    }
    hash
}

pub fn unix_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    now.as_millis() as i64
}

/// Leaves the session under `key` a minute to live, in Redis and in its `$expires`, as if most of
/// its idle timeout had passed: the next read must roll the TTL.
pub async fn leave_a_minute(redis: &Client, key: &str) {
    let soon = unix_ms() + 60_000;
    let _: () = redis
        .hset(key, ("$expires", soon.to_string()))
        .await
        .unwrap();
    let _: () = redis.pexpire(key, 60_000, None).await.unwrap();
}

/// Once the other framework's lock key `lock` exists, `PUT /kv/ours` with `y`, which must wait
/// for the lock to go and then succeed: how long it waited.
pub async fn put_once_unlocked(
    server: &RedisServer,
    lock: &str,
    browser: &mut Browser,
) -> std::time::Duration {
    wait_for(
        "the other app takes its lock",
        std::time::Duration::from_secs(5),
        || server.cli(&["EXISTS", lock]).trim() == "1",
    );
    let started = std::time::Instant::now();
    let status = browser.put("/kv/ours", "y").await.status;
    assert_eq!(status, axum::http::StatusCode::NO_CONTENT);
    started.elapsed()
}

/// Runs `php` with its arguments, which must succeed: what it printed.
pub fn php_output(args: &[&str]) -> String {
    let output = std::process::Command::new("php")
        .args(args)
        .output()
        .expect("php8.2-cli with php-redis is installed");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// What [`foreign_costs`] must find, in every foreign format: (round trips, of which write).
pub const FOREIGN_COSTS: [(usize, usize); 7] =
    [(1, 1), (1, 0), (2, 1), (2, 1), (2, 1), (3, 2), (1, 1)];

/// The round trips each demo request costs in `format` (its cookie named `cookie`), and how many of
/// them write, counted with MONITOR: a new session (one create), a read (the value and its TTL, one
/// script), a read and a write (`GET /counter`: then one compare-and-set), a write without a read
/// (it reads the value it compares against), an atomic increment (the same two), a login (read the
/// old value, create the new key, delete the old one) and a logout (one delete).
pub async fn foreign_costs(
    server: &RedisServer,
    format: axum_redis_session::Format,
    cookie: &str,
) -> [(usize, usize); 7] {
    let redis = store_on(server).await;
    redis.ready().await.expect("connected, scripts loaded");
    let layer = axum_redis_session::SessionLayer::new(redis.with_format(format));
    let mut browser = Browser::new(demo::app(layer.with_secure(false))).with_cookie_name(cookie);
    let mut monitor = Monitor::start(server).await;
    let mut costs = [(0, 0); 7];
    for (n, cost) in costs.iter_mut().enumerate() {
        match n {
            0 => browser.put("/kv/name", "v").await,
            1 => browser.get("/kv/name").await,
            2 => browser.get("/counter").await,
            3 => browser.put("/kv/name", "w").await,
            4 => browser.post_form("/counter/incr", "").await,
            5 => browser.post_form("/login", "user=7").await,
            _ => browser.post_form("/logout", "").await,
        };
        let seen = monitor.take().await;
        *cost = (seen.round_trips(), seen.writing_round_trips());
    }
    costs
}

//! Test support: the shared `testkit` (real `redis-server` processes and topologies on free
//! loopback ports, a `MONITOR` tap that counts what Redis receives), stores on them, a
//! cookie-keeping client that drives the demo's contract, example binaries run as processes, an
//! nginx in front of them, and headless Chromium driven through `chromedriver`.
#![allow(dead_code, unused_imports, unreachable_pub)] // each test binary uses its own part of this module

#[path = "../../examples/demo.rs"]
pub mod demo;

mod browser;
mod process;
mod proxy;
mod webdriver;

use axum_redis_session::fred::prelude::*;
use axum_redis_session::RedisStore;

pub use browser::{app, app_on, Browser, Gate, Reply};
pub use process::{
    example_binary, request, request_with_headers, token_of, ExampleProcess, RawReply, WireReply,
};
pub use proxy::Nginx;
pub use testkit::{
    free_port, wait_for, Cluster, Monitor, Received, RedisServer, Seen, SentinelGroup, TlsFiles,
    SERVICE,
};
pub use webdriver::{ChromeDriver, Window};

/// A store on a fred pool that is connected before it is returned, and that reconnects forever
/// (as `RedisStore::connect` does) so failover tests can watch it recover.
pub async fn connected_store(config: Config) -> RedisStore {
    let pool = Builder::from_config(config)
        .set_policy(ReconnectPolicy::new_constant(0, 100))
        .build_pool(2)
        .unwrap();
    pool.init().await.expect("store connects");
    RedisStore::from_pool(pool)
}

/// A store connected to `server`, ready (connected) before it is returned.
pub async fn store_on(server: &RedisServer) -> RedisStore {
    connected_store(Config::from_url(&server.url()).unwrap()).await
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

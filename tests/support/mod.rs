//! Test support: real `redis-server` processes and topologies on free loopback ports, a `MONITOR`
//! tap that counts what Redis receives, a cookie-keeping client that drives the demo's contract,
//! example binaries run as processes, an nginx in front of them, and a minimal WebDriver client for
//! headless Chromium.
#![allow(dead_code, unused_imports, unreachable_pub)] // each test binary uses its own part of this module

#[path = "../../examples/demo.rs"]
pub mod demo;

mod browser;
mod process;
mod proxy;
mod server;
mod topology;
mod webdriver;

pub use browser::{app, app_on, Browser, Gate, Reply};
pub use process::{
    example_binary, request, request_with_headers, token_of, ExampleProcess, RawReply, WireReply,
};
pub use proxy::Nginx;
pub use server::{connected_store, free_port, Monitor, Received, RedisServer, Seen};
pub use topology::{wait_for, Cluster, SentinelGroup, TlsFiles, SERVICE};
pub use webdriver::{ChromeDriver, Element, Window};

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

//! What the near-cache logs when its tracking breaks: one warning when it stops serving, one line
//! when it serves again, never one per request. Its own test binary: tracing caches which call
//! sites are enabled, and a test running in parallel could settle that before this subscriber.

mod support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use support::{Captured, Instance, RedisServer};

/// The captured lines of `level` that mention the near-cache.
fn near_cache_lines(captured: &Captured, level: &str) -> Vec<String> {
    captured
        .text()
        .lines()
        .filter(|line| line.contains(level) && line.contains("near-cache"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracking_outage_is_one_warning_and_its_end_one_line() {
    let captured = Captured::default();
    let subscriber = captured.subscriber(tracing::Level::INFO);
    // Global: the cache's supervisor logs from a task on any of the runtime's threads.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = RedisServer::start();
    let a = Instance::start(&server.url(), |l| l).await;
    a.ready(Duration::from_secs(10)).await;
    let mut browser = a.browser(None);
    browser.get("/counter").await;
    a.warm(&mut browser, "/counter/peek").await;
    assert!(near_cache_lines(&captured, "WARN").is_empty());

    // Redis stopped for 3 s: heartbeats and every attempt to start over fail, requests get 503s.
    server.signal("STOP");
    let stopped = Instant::now();
    let mut unavailable = 0;
    while stopped.elapsed() < Duration::from_secs(3) {
        let status = browser.get("/counter/peek").await.status;
        unavailable += usize::from(status == StatusCode::SERVICE_UNAVAILABLE);
    }
    server.signal("CONT");
    let (reply, _) = browser
        .get_until_ok("/counter/peek", Duration::from_secs(10))
        .await;
    assert_eq!(reply.body, "1");
    a.warm(&mut browser, "/counter/peek").await;

    assert!(unavailable > 3, "{unavailable} requests answered 503");
    let warnings = near_cache_lines(&captured, "WARN");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("reads go to Redis"), "{}", warnings[0]);
    let resumed = near_cache_lines(&captured, "INFO");
    assert_eq!(resumed.len(), 1, "{resumed:#?}");
    assert!(resumed[0].contains("on again"), "{}", resumed[0]);
}

//! Hardening on real Redis, counted with MONITOR: atomic counters, logout-everywhere in one script,
//! sessions per user capped.

mod support;

use axum::http::StatusCode;
use support::{Browser, Monitor, RedisServer};

#[tokio::test]
async fn an_increment_is_one_round_trip_without_a_load() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app);
    browser.get("/counter").await;
    // Its script cached by the server (a first use is EVALSHA, NOSCRIPT, EVAL).
    browser.post_form("/counter/incr", "").await;
    let mut monitor = Monitor::start(&server).await;
    let reply = browser.post_form("/counter/incr", "").await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "3"));
    let received = monitor.take().await;
    assert_eq!(received.round_trips(), 1, "{received:?}");
    assert!(
        !received.0.iter().any(|c| c.name == "hgetall"),
        "no load: {received:?}"
    );
    assert_eq!(received.writes(), vec!["hincrby", "hset"], "{received:?}");
}

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

#[tokio::test]
async fn logout_everywhere_is_one_script_that_leaves_nothing_of_the_user() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browsers: Vec<Browser> = (0..3).map(|_| Browser::new(app.clone())).collect();
    for browser in &mut browsers {
        browser.post_form("/login", "user=alice").await;
    }
    // Warm the script cache with another user's logout-everywhere.
    let mut bob = Browser::new(app.clone());
    bob.post_form("/login", "user=bob").await;
    bob.post_form("/logout-everywhere", "").await;

    let mut monitor = Monitor::start(&server).await;
    let reply = browsers[0].post_form("/logout-everywhere", "").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let received = monitor.take().await;
    // The load that finds the user, then one script: no window between reading the index and
    // deleting what it names.
    assert_eq!(received.round_trips(), 2, "{received:?}");
    assert!(
        !received
            .0
            .iter()
            .any(|c| !c.from_script && c.name == "zrange"),
        "the index is read inside the script: {received:?}"
    );
    let left = server.cli(&["--scan", "--pattern", "session:*"]);
    assert!(
        left.trim().is_empty(),
        "nothing of alice or bob is left: {left:?}"
    );
}

/// A new instance of the app, its store just built from the URL: the first requests wait for the
/// connection being made (within the command timeout) instead of failing, on every topology.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_instance_serves_its_first_requests_and_says_when_it_is_ready() {
    use axum_redis_session::{RedisStore, SessionLayer};
    let server = RedisServer::start();
    let cluster = support::Cluster::start();
    for url in [server.url(), cluster.url()] {
        for _ in 0..3 {
            let store = RedisStore::connect(&url).await.unwrap();
            let layer = SessionLayer::new(store.clone());
            let mut browser = Browser::new(support::app(layer, support::Gate::default()));
            let reply = browser.get("/counter").await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (StatusCode::OK, "1"),
                "{url}"
            );
            store.ready().await.unwrap();
        }
    }
    // Nothing listening: not ready, within the command timeout.
    let nowhere = format!("redis://127.0.0.1:{}", support::free_port());
    let store = RedisStore::connect(&nowhere)
        .await
        .unwrap()
        .with_command_timeout(time::Duration::milliseconds(300));
    let started = std::time::Instant::now();
    assert!(store.ready().await.is_err());
    assert!(started.elapsed() < std::time::Duration::from_millis(800));
}

//! Hardening on real Redis, checked with MONITOR: atomic counters, logout-everywhere in one script,
//! a fresh instance's first requests, the order of a cycle across cluster slots, a save that never
//! reads the whole session.

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
        !received
            .0
            .iter()
            .any(|c| c.from_script && c.name == "hgetall"),
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

/// On a cluster a cycle moves the session across slots in several calls. The old key is deleted
/// last, and only once the new one is written: a refused login (too large) deletes nothing, so a
/// logout landing meanwhile can never be undone by a write-back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_cycle_deletes_the_old_key_last_and_a_refused_one_deletes_nothing() {
    use axum_redis_session::fred::prelude::Config;
    let cluster = support::Cluster::start();
    let store = support::connected_store(Config::from_url(&cluster.url()).unwrap()).await;
    let (app, _) = support::app_on(store, |l| l.with_max_bytes(300)).await;
    let mut browser = Browser::new(app);
    browser.put("/kv/a", &"x".repeat(100)).await;
    let old_key = support::session_key("session:", browser.cookie.as_deref().unwrap());
    let mut monitors = Vec::new();
    for port in cluster.masters() {
        monitors.push(Monitor::start(cluster.node(port)).await);
    }

    let refused = browser
        .post_form("/test/login-with-note", &"y".repeat(400))
        .await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    for monitor in &mut monitors {
        let received = monitor.take().await;
        assert!(
            !received
                .0
                .iter()
                .any(|c| c.name == "del" && c.line.contains(&old_key)),
            "a refused cycle deleted the old key: {received:?}"
        );
    }
    assert_eq!(
        browser.get("/kv/a").await.body.len(),
        100,
        "the session is intact"
    );

    // An accepted login: the new key written, then the old one deleted.
    assert_eq!(
        browser
            .post_form("/test/login-with-note", "hi")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let new_key = support::session_key("session:", browser.cookie.as_deref().unwrap());
    let mut written = None;
    let mut deleted = None;
    for monitor in &mut monitors {
        for command in monitor.take().await.0 {
            let at: f64 = command.line[1..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            if command.name == "hset" && command.line.contains(&new_key) {
                written = written.or(Some(at));
            }
            if command.name == "del" && command.line.contains(&old_key) {
                deleted = Some(at);
            }
        }
    }
    let (written, deleted) = (
        written.expect("new key written"),
        deleted.expect("old key deleted"),
    );
    assert!(
        written <= deleted,
        "old deleted at {deleted}, new written at {written}"
    );
    assert_eq!(browser.get("/kv/a").await.body.len(), 100, "the data moved");
}

/// A save reads the session's metadata and the fields it changes, never the whole hash, and keeps
/// `$size` equal to the bytes of the user fields as they change.
#[tokio::test]
async fn a_save_never_reads_the_whole_session_and_keeps_its_size_exact() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app);
    for i in 0..50 {
        browser.put(&format!("/kv/k{i}"), &"v".repeat(i)).await;
    }
    let key = support::session_key("session:", browser.cookie.as_deref().unwrap());
    let mut monitor = Monitor::start(&server).await;
    browser.put("/kv/k3", "a longer value than before").await;
    browser.delete("/kv/k4").await;
    browser.put("/kv/new", "fresh").await;
    // Crate metadata (the CSRF token) goes through save.lua's update, the rest through update.lua.
    browser.get("/csrf").await;
    browser.put("/kv/k5", "").await;
    let received = monitor.take().await;
    assert!(
        !received
            .0
            .iter()
            .any(|c| c.from_script && c.name == "hgetall"),
        "{received:?}"
    );
    let fields = server.cli(&["hgetall", &key]);
    let lines: Vec<&str> = fields.lines().collect();
    let mut user_bytes = 0;
    let mut stored = None;
    for pair in lines.chunks(2) {
        let (name, value) = (pair[0], pair[1]);
        if name == "$size" {
            stored = Some(value.parse::<usize>().unwrap());
        } else if !name.starts_with('$') {
            user_bytes += name.len() + value.len();
        }
    }
    assert_eq!(stored, Some(user_bytes), "{fields}");
}

//! Faults injected for real, each answered in time and leaving nothing half-done: Redis killed
//! while the app serves, an app started before Redis or before its cluster, a save that fails after
//! its handler ran, a stalled Redis, a restart with AOF, a full Redis, corrupt data, fresh ids that
//! collide, a fresh instance's first requests, and cluster and Sentinel failovers survived without
//! restarting the app. Every bound RELIABILITY.md and docs/ publish is asserted with its margin.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum_redis_session::fred::prelude::*;
use axum_redis_session::SessionLayer;
use support::{
    session_key, wait_for, Browser, Cluster, Gate, RedisServer, SentinelGroup, MANY_FIELDS,
};

/// The command timeout of the fault tests below, and the margin RELIABILITY.md states beside it:
/// a session route answers 503 within `FAULT_TIMEOUT + MARGIN_503`.
const FAULT_TIMEOUT_MS: i64 = 500;

const MARGIN_503: Duration = Duration::from_millis(250);

/// RELIABILITY.md: service resumes within this of Redis answering again. `RedisStore::connect`
/// backs off from 100 ms doubling to 2 s (plus up to 100 ms of jitter) between attempts, so a
/// long outage costs at most one 2.1 s wait, and a request sent just before the reconnect its
/// 500 ms timeout; the rest is margin. (A 10 s cap would cost up to 6 s after this outage.)
const RECOVERY_BOUND: Duration = Duration::from_secs(4);

/// `GET path` answers 503 with the documented body, within the bound; returns how long it took.
async fn answers_503_in_time(browser: &mut Browser, path: &str) -> Duration {
    let bound = Duration::from_millis(FAULT_TIMEOUT_MS as u64) + MARGIN_503;
    let started = Instant::now();
    let reply = browser.get(path).await;
    let took = started.elapsed();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable"),
        "{path}"
    );
    assert_eq!(
        reply.set_cookie(),
        None,
        "{path}: no cookie for a session not written"
    );
    assert!(took < bound, "{path}: 503 after {took:?}, over {bound:?}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_while_serving_answers_503_in_time_and_recovers_without_restart() {
    // AOF, so the session outlives the outage and recovery shows as the same counter going on.
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = support::url_store(&server.url(), FAULT_TIMEOUT_MS).await;
    let app = support::app(SessionLayer::new(store), Gate::default());
    support::wait_until_served(&app, 4, Duration::from_secs(10)).await;
    let mut browser = Browser::new(app.clone());
    assert_eq!(browser.get("/counter").await.body, "1");
    assert_eq!(browser.get("/counter").await.body, "2");
    let mut visitor = Browser::new(app.clone());

    server.stop(); // SIGKILL, by PID
    let killed = Instant::now();
    // Through the outage, long enough for the reconnect delay to reach its 2 s cap (attempts come
    // 0.1, 0.3, 0.7, 1.5, 3.1, 5.1, 7.1 s after the kill), so a longer cap would show as a slower
    // recovery: routes that do not touch the session answer at once, session routes 503 in time.
    let mut slowest = Duration::ZERO;
    while killed.elapsed() < Duration::from_millis(6500) {
        let started = Instant::now();
        assert_eq!(browser.get("/health").await.status, StatusCode::OK);
        assert!(started.elapsed() < Duration::from_millis(100));
        slowest = slowest.max(answers_503_in_time(&mut browser, "/counter").await);
        slowest = slowest.max(answers_503_in_time(&mut browser, "/counter/peek").await);
        slowest = slowest.max(answers_503_in_time(&mut visitor, "/counter").await);
    }
    println!("Redis killed: slowest 503 {slowest:?} (command timeout {FAULT_TIMEOUT_MS} ms)");

    server.restart();
    let (reply, took) = browser.get_until_ok("/counter", RECOVERY_BOUND).await;
    assert_eq!(reply.body, "3", "the same session, served again");
    println!("Redis killed: first success {took:?} after Redis answered again");
    assert!(took < RECOVERY_BOUND, "recovered after {took:?}");
}

#[tokio::test]
async fn an_app_started_before_redis_answers_503_fast_and_serves_once_it_is_up() {
    let port = support::free_port();
    let store = support::url_store(&format!("redis://127.0.0.1:{port}"), FAULT_TIMEOUT_MS).await;
    let app = support::app(SessionLayer::new(store), Gate::default());
    let mut browser = Browser::new(app);

    assert_eq!(browser.get("/health").await.status, StatusCode::OK);
    answers_503_in_time(&mut browser, "/counter").await;
    // The reconnect delay reaches its cap before Redis comes up.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let _server = RedisServer::start_on(port, &[]);
    let (reply, took) = browser.get_until_ok("/counter", RECOVERY_BOUND).await;
    assert_eq!(reply.body, "1");
    println!("Redis started late: first success {took:?} after it answered");
    assert!(took < RECOVERY_BOUND, "served after {took:?}");
}

/// RELIABILITY.md: a failed save answers within the command timeout plus this.
const SAVE_TIMEOUT_MS: i64 = 300;

const MARGIN_FAILED_SAVE: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_save_answers_503_never_the_handlers_200() {
    // AOF, so that after a restart Redis shows what it held when it was killed.
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = support::url_store(&server.url(), SAVE_TIMEOUT_MS).await;
    let layer = SessionLayer::new(store);
    let (create_gate, cycle_gate) = (Gate::default(), Gate::default());
    let creating = support::app(layer.clone(), create_gate.clone());
    let cycling = support::app(layer, cycle_gate.clone());
    support::wait_until_served(&creating, 4, Duration::from_secs(10)).await;
    let mut user = Browser::new(cycling);
    assert_eq!(user.get("/counter").await.body, "1");
    let old = user.cookie.clone().unwrap();

    // Two requests whose success sets a cookie, held in their handlers: a new visitor's first write
    // (creates a session) and a login (cycles the id).
    let mut visitor = Browser::new(creating);
    let create = tokio::spawn(async move { visitor.put("/test/slow-put", "x").await });
    let cycle = tokio::spawn(async move { user.post_form("/test/slow-login", "user=alice").await });
    create_gate.wait_arrival().await;
    cycle_gate.wait_arrival().await;
    server.stop();
    let released = Instant::now();
    create_gate.release();
    cycle_gate.release();
    let replies = [create.await.unwrap(), cycle.await.unwrap()];
    let took = released.elapsed();
    for reply in &replies {
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable")
        );
        assert_eq!(
            reply.set_cookie(),
            None,
            "no cookie for a session not written"
        );
    }
    let bound = Duration::from_millis(SAVE_TIMEOUT_MS as u64) + MARGIN_FAILED_SAVE;
    println!("failed save: both 503 {took:?} after the handlers returned");
    assert!(took < bound, "503 after {took:?}, over {bound:?}");

    // Nothing was written: the old id still holds the session as it was.
    server.restart();
    let redis = server.probe().await;
    let held: HashMap<String, String> = redis.hgetall(session_key("session:", &old)).await.unwrap();
    assert_eq!(held.get("count").map(String::as_str), Some("1"));
    assert_eq!(held.get("$user"), None, "the login was not applied");
}

/// RELIABILITY.md: with a 300 ms command timeout, a stalled Redis costs a request at most
/// 300 ms + `STALL_MARGIN` before its 503.
const STALL_TIMEOUT_MS: i64 = 300;

const STALL_MARGIN: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_answers_503_in_time_and_never_half_writes() {
    let server = RedisServer::start();
    let store = support::url_store(&server.url(), STALL_TIMEOUT_MS).await;
    let (app, _) = support::app_on(store, |l| l).await;
    support::wait_until_served(&app, 4, Duration::from_secs(10)).await;
    let redis = server.probe().await;
    let mut browser = Browser::new(app);
    browser.put("/test/many", "1").await;
    browser.put("/kv/b", "1").await;
    let key = session_key("session:", browser.cookie.as_ref().unwrap());
    let before = support::content(redis.hgetall(&key).await.unwrap());
    for field in MANY_FIELDS {
        assert_eq!(before[field], "\"1\"");
    }

    server.cli(&["client", "pause", "1500", "all"]);
    let started = Instant::now();
    // One request that changes eight fields.
    let reply = browser.put("/test/many", "2").await;
    let took = started.elapsed();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable")
    );
    let bound = Duration::from_millis(STALL_TIMEOUT_MS as u64) + STALL_MARGIN;
    println!("stall: 503 after {took:?} (command timeout {STALL_TIMEOUT_MS} ms)");
    assert!(took < bound, "503 after {took:?}, over {bound:?}");

    tokio::time::sleep(Duration::from_millis(1600).saturating_sub(started.elapsed())).await;
    let after = support::content(redis.hgetall(&key).await.unwrap());
    // A command already sent cannot be recalled: once Redis wakes it may run, but only whole.
    let mut applied = before.clone();
    for field in MANY_FIELDS {
        applied.insert(field.into(), "\"2\"".into());
    }
    assert!(
        after == before || after == applied,
        "partial write: {after:?}"
    );
    assert_eq!(after["b"], "\"1\"");
}

/// RELIABILITY.md: after a restart with AOF, the session is served again within this of Redis
/// answering (`RedisStore::connect`'s first reconnect attempts come 100 ms, then 200 ms, apart).
const AOF_RECOVERY_BOUND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_with_aof() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = support::url_store(&server.url(), 300).await;
    let (app, _) = support::app_on(store, |l| l).await;
    support::wait_until_served(&app, 4, Duration::from_secs(10)).await;
    let mut browser = Browser::new(app);
    browser.post_form("/login", "user=alice").await;
    browser.put("/kv/cart", "3 items").await;

    server.restart();
    let (reply, took) = browser.get_until_ok("/kv/cart", AOF_RECOVERY_BOUND).await;
    assert_eq!(reply.body, "3 items");
    println!("AOF restart: session readable {took:?} after Redis came back");
    assert!(took < AOF_RECOVERY_BOUND, "readable after {took:?}");
    assert_eq!(browser.get("/me").await.body, "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_writes_cleanly_and_keeps_serving_reads() {
    let server = RedisServer::start_with(&["--maxmemory-policy", "noeviction"]);
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app.clone());
    browser.put("/kv/a", "1").await;

    // Data over the limit, not a rejected command's own buffer: store 2 MB, then cap memory at 1 MB.
    let redis = server.probe().await;
    let blob = "x".repeat(100_000);
    for i in 0..20 {
        let _: () = redis
            .set(format!("junk:{i}"), blob.as_str(), None, None, false)
            .await
            .unwrap();
    }
    server.cli(&["config", "set", "maxmemory", "1mb"]);
    let refused: Result<(), _> = redis.set("probe", "x", None, None, false).await;
    assert!(refused.is_err(), "Redis is over maxmemory");

    let write = browser.put("/kv/b", "2").await;
    assert_eq!(
        (write.status, write.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable")
    );
    let read = browser.get("/kv/a").await;
    assert_eq!(
        (read.status, read.body.as_str()),
        (StatusCode::OK, "1"),
        "reads keep working"
    );
    let fresh = Browser::new(app).get("/counter").await;
    assert_eq!(fresh.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        fresh.set_cookie(),
        None,
        "no cookie for a session that was not written"
    );
    assert_eq!(
        browser.get("/kv/b").await.status,
        StatusCode::NOT_FOUND,
        "nothing of the refused write"
    );
}

#[tokio::test]
async fn corrupt_json_is_a_typed_error_for_that_read_only() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app);
    browser.get("/counter").await;
    browser.put("/kv/a", "still here").await;
    let key = session_key("session:", browser.cookie.as_ref().unwrap());
    let _: () = server
        .probe()
        .await
        .hset(&key, ("count", "{not json"))
        .await
        .unwrap();

    let reply = browser.get("/counter/peek").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    );
    assert_eq!(
        browser.get("/kv/a").await.body,
        "still here",
        "the rest of the session reads fine"
    );
}

/// docs/guarantees.md: "Create without collision". A proxy takes the very key the next fresh id hashes to just
/// before the save script runs, so the real script finds it taken; the store must draw another id
/// (up to three in all), never write into the taken key, and answer 503 once three are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_id_that_collides_is_retried_and_the_taken_key_is_never_written() {
    let server = RedisServer::start();
    let squatter = support::Squatter::start(&server).await;
    let store = support::url_store(&squatter.url(), 1000).await;
    let layer = SessionLayer::new(store);
    let app = support::app(layer.clone(), Gate::default());
    support::wait_until_served(&app, 4, Duration::from_secs(10)).await;
    let redis = server.probe().await;
    let untouched = |taken: Vec<String>| {
        let redis = redis.clone();
        async move {
            for key in taken {
                let held: HashMap<String, String> = redis.hgetall(&key).await.unwrap();
                assert_eq!(
                    held.keys().collect::<Vec<_>>(),
                    [support::SQUATTER_FIELD],
                    "{key} was written into"
                );
            }
        }
    };

    // Create: two ids taken, the third is free.
    squatter.collide_next(2);
    let mut visitor = Browser::new(app.clone());
    let reply = visitor.get("/counter").await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "1"));
    let taken = squatter.taken();
    assert_eq!(taken.len(), 2);
    let key = session_key("session:", visitor.cookie.as_ref().unwrap());
    assert!(!taken.contains(&key), "the session got a free id");
    untouched(taken.clone()).await;
    assert_eq!(visitor.get("/counter").await.body, "2");

    // Cycle (login): the id it moves to is taken once.
    squatter.collide_next(1);
    assert_eq!(
        visitor.post_form("/login", "user=alice").await.status,
        StatusCode::NO_CONTENT
    );
    let taken = squatter.taken();
    assert_eq!(taken.len(), 3);
    let cycled = session_key("session:", visitor.cookie.as_ref().unwrap());
    assert!(cycled != key && !taken.contains(&cycled));
    assert_eq!(visitor.get("/me").await.body, "alice");
    assert_eq!(visitor.get("/counter/peek").await.body, "2");
    untouched(taken).await;

    // Three ids taken in a row: a broken random source; the request fails, nothing is written.
    squatter.collide_next(3);
    let before: i64 = redis.dbsize().await.unwrap();
    let reply = Browser::new(app).get("/counter").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.set_cookie(), None);
    assert_eq!(squatter.taken().len(), 6);
    let after: i64 = redis.dbsize().await.unwrap();
    assert_eq!(after, before + 3, "only the three squatted keys were added");
    untouched(squatter.taken()).await;
    assert_eq!(layer.metrics().snapshot().store_errors, 1);
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

/// Published recovery bounds (docs/scaling.md, RELIABILITY.md), each asserted below.
/// A cluster master killed: every session readable again within this of the kill
/// (`cluster-node-timeout 1000`).
const CLUSTER_FAILOVER_BOUND: Duration = Duration::from_secs(6);

/// The Sentinel master killed: every session readable again within this of the kill
/// (`down-after-milliseconds 1000`).
const SENTINEL_FAILOVER_BOUND: Duration = Duration::from_secs(6);

/// An app started before its cluster: first session saved within this of `--cluster create`.
const CLUSTER_FORMATION_BOUND: Duration = Duration::from_secs(8);

/// Keys whose owners all answer `expected` on `path`, retried until the store has recovered.
async fn wait_until_all_answer(
    browsers: &mut [Browser],
    path: &str,
    expected: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for browser in browsers.iter_mut() {
            let reply = browser.get(path).await;
            all &= reply.status == StatusCode::OK && reply.body == expected;
        }
        if all {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "no recovery within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every replica has applied everything its master has written.
fn wait_for_replication(nodes: &[&support::RedisServer]) {
    wait_for("replicas to catch up", Duration::from_secs(10), || {
        nodes.iter().all(|node| {
            let info = node.cli(&["info", "replication"]);
            if !info.contains("role:slave") {
                return true;
            }
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse::<i64>().ok())
            };
            info.contains("master_link_status:up")
                && field("slave_repl_offset:").is_some()
                && field("slave_repl_offset:") == field("master_repl_offset:")
        })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_recovers_without_restarting_the_app() {
    let mut cluster = Cluster::start();
    let app = support::app_for(&cluster.url()).await;
    let mut browsers: Vec<Browser> = (0..30).map(|_| Browser::new(app.clone())).collect();
    for browser in &mut browsers {
        assert_eq!(browser.get("/counter").await.body, "1");
    }
    wait_for_replication(&cluster.nodes.iter().collect::<Vec<_>>());
    let victim = cluster
        .masters()
        .into_iter()
        .max_by_key(|&port| {
            cluster
                .node(port)
                .cli(&["dbsize"])
                .trim()
                .parse::<u32>()
                .unwrap()
        })
        .unwrap();

    cluster.kill(victim);
    let recovered =
        wait_until_all_answer(&mut browsers, "/counter/peek", "1", CLUSTER_FAILOVER_BOUND).await;
    println!(
        "cluster failover: every session readable again {recovered:?} after the master was killed"
    );
    assert!(recovered < CLUSTER_FAILOVER_BOUND);
    assert_eq!(cluster.masters().len(), 3, "a replica took over");
    for browser in &mut browsers {
        assert_eq!(browser.get("/counter").await.body, "2", "writes work again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_followed_without_restarting_the_app() {
    let mut group = SentinelGroup::start();
    let app = support::app_for(&group.url()).await;
    let mut browsers: Vec<Browser> = (0..10).map(|_| Browser::new(app.clone())).collect();
    for browser in &mut browsers {
        browser.get("/counter").await;
    }
    wait_for_replication(&[&group.replica]);
    let old_master = group.master.port;

    group.master.stop();
    let recovered =
        wait_until_all_answer(&mut browsers, "/counter/peek", "1", SENTINEL_FAILOVER_BOUND).await;
    println!(
        "sentinel failover: every session readable again {recovered:?} after the master was killed"
    );
    assert!(recovered < SENTINEL_FAILOVER_BOUND);
    assert_eq!(
        group.current_master(),
        Some(group.replica.port),
        "the replica was promoted"
    );
    assert_ne!(group.current_master(), Some(old_master));
    for browser in &mut browsers {
        assert_eq!(
            browser.get("/counter").await.body,
            "2",
            "writes go to the new master"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_started_before_its_cluster_forms_serves_once_it_has() {
    let cluster = Cluster::start_unformed();
    // The application's own path: connect from a URL, without waiting for the servers.
    let store = support::url_store(&cluster.url(), 500).await;
    let mut browser = Browser::new(support::app(SessionLayer::new(store), Gate::default()));
    assert_eq!(browser.get("/health").await.status, StatusCode::OK);
    assert_eq!(
        browser.get("/counter").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let forming = tokio::task::spawn_blocking(move || {
        cluster.form();
        cluster
    });
    let started = Instant::now();
    let mut browsers = [browser];
    let served =
        wait_until_all_answer(&mut browsers, "/counter", "1", CLUSTER_FORMATION_BOUND).await;
    let _cluster = forming.await.unwrap();
    println!(
        "app started before its cluster: first session saved {served:?} after formation began"
    );
    assert!(started.elapsed() < CLUSTER_FORMATION_BOUND);
}

/// On a cluster a user's index is on another master than their session. A read that must roll the
/// session's TTL while that master refuses writes answers 503 and leaves the TTL as it was: the
/// index never holds a session for less long than it lives, so a logout-everywhere after the
/// outage still ends it. (Before: the TTL rolled, the index kept the old expiry, and the index
/// expired with it, so the logout-everywhere missed a session that was still alive.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roll_while_the_index_is_unwritable_leaves_no_session_outside_the_index() {
    const IDLE: Duration = Duration::from_secs(4);
    let cluster = Cluster::start();
    let store = support::url_store(&cluster.url(), FAULT_TIMEOUT_MS).await;
    let idle = time::Duration::seconds(IDLE.as_secs() as i64);
    let app = support::app(
        SessionLayer::new(store).with_idle_timeout(idle),
        Gate::default(),
    );
    support::wait_until_served(&app, 6, Duration::from_secs(10)).await;
    let index = "session:user:alice";
    // A login whose session is on another master than alice's index.
    let (mut browser, logged_in, index_master) = loop {
        let mut browser = Browser::new(app.clone());
        browser.post_form("/login", "user=alice").await;
        let logged_in = Instant::now();
        let key = session_key("session:", browser.cookie.as_deref().unwrap());
        let index_master = cluster.holders(index);
        if cluster.holders(&key) != index_master {
            break (browser, logged_in, index_master[0]);
        }
    };

    // Half the idle timeout on, a read must roll the TTL; alice's index refuses writes meanwhile.
    tokio::time::sleep_until((logged_in + IDLE / 2).into()).await;
    let index_node = cluster.node(index_master);
    index_node.cli(&["config", "set", "min-replicas-to-write", "10"]);
    let reply = browser.get("/me").await;
    index_node.cli(&["config", "set", "min-replicas-to-write", "0"]);
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);

    // Past the index's own expiry (the idle timeout and a tenth from the login), alice logs out
    // everywhere from another browser.
    tokio::time::sleep_until((logged_in + IDLE + IDLE / 10 + IDLE / 20).into()).await;
    let mut other = Browser::new(app.clone());
    other.post_form("/login", "user=alice").await;
    assert_eq!(
        other.post_form("/logout-everywhere", "").await.status,
        StatusCode::NO_CONTENT
    );
    assert!(
        logged_in.elapsed() < IDLE / 2 + IDLE,
        "checked while a rolled session would still live"
    );
    assert_eq!(
        browser.get("/me").await.status,
        StatusCode::UNAUTHORIZED,
        "the session is ended"
    );
}

//! What Redis receives for each request, counted with `MONITOR` (client round trips, the writes
//! among them, the calls of each script): the table of docs/guarantees.md row by row, a read that is one
//! `HGETALL` and touches only when due, a typed save that sends only the fields it changed, an
//! increment without a load, logout-everywhere in one script, a save that never reads the whole
//! session, nothing at all for malformed cookies and oversized bodies, a hot near-cache read, and
//! the same counts on a cluster, taken on every master.

mod support;

use std::collections::HashMap;

use axum::http::StatusCode;
use axum_redis_session::fred::prelude::*;
use support::{session_key, Browser, Cluster, Instance, Monitor, Received, RedisServer};

const TOUCH_LUA: &str = "touch";
const CREATE_LUA: &str = "create";
const UPDATE_LUA: &str = "update";
/// The common write's script: user fields of a session as read (`fast_update.lua`).
const FAST_UPDATE_LUA: &str = "fast_update";

/// A write is one round trip from the first request on: the scripts are on the server before a
/// request needs them, once the store is ready at start, after Redis restarted (its script cache
/// empty), and, after a `SCRIPT FLUSH` has cost one write its `NOSCRIPT`, for every other script.
#[tokio::test]
async fn the_first_write_is_one_round_trip_at_start_and_after_redis_forgot_the_scripts() {
    let no_eval = |received: &Received| {
        assert!(
            received
                .0
                .iter()
                .all(|c| c.name != "eval" && c.name != "script"),
            "no script sent whole or loaded meanwhile: {received:?}"
        );
    };
    let mut server = RedisServer::start();
    let store = support::url_store(&server.url(), 1000).await;
    store.ready().await.expect("connected, scripts loaded");
    let (app, _) = support::app_on(store.clone(), |l| l).await;
    let mut browser = Browser::new(app.clone());
    let mut monitor = Monitor::start(&server).await;
    assert_eq!(browser.get("/counter").await.body, "1");
    let first = monitor.take().await;
    assert_eq!(
        (first.round_trips(), first.script_calls(CREATE_LUA)),
        (1, 1),
        "{first:?}"
    );
    no_eval(&first);

    drop(monitor);
    server.restart();
    support::wait_until_served(&app, 4, std::time::Duration::from_secs(10)).await;
    store
        .ready()
        .await
        .expect("reconnected, scripts loaded again");
    let mut monitor = Monitor::start(&server).await;
    // The session went with the restart: a load that finds nothing, then a create.
    assert_eq!(browser.get("/counter").await.body, "1");
    let after_restart = monitor.take().await;
    assert_eq!(
        (
            after_restart.round_trips(),
            after_restart.script_calls(CREATE_LUA)
        ),
        (2, 1),
        "{after_restart:?}"
    );
    no_eval(&after_restart);

    server.cli(&["script", "flush"]);
    assert_eq!(
        browser.put("/kv/a", "1").await.status,
        StatusCode::NO_CONTENT
    );
    let flushed = monitor.take().await;
    assert_eq!(
        flushed.script_calls(UPDATE_LUA),
        2,
        "EVALSHA, NOSCRIPT, EVAL: {flushed:?}"
    );
    store.ready().await.expect("scripts loaded again");
    monitor.take().await;
    let login = browser.post_form("/login", "user=alice").await;
    assert_eq!(login.status, StatusCode::NO_CONTENT);
    let after_flush = monitor.take().await;
    assert_eq!(after_flush.script_calls(CREATE_LUA), 1, "{after_flush:?}");
    no_eval(&after_flush);
}

/// The guarantees guide's table of round trips and writing round trips per request, row by row.
#[tokio::test]
async fn round_trips_and_writes_per_request_as_the_readme_tables_them() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app.clone());
    // A session to use, and every script cached by the server (its first use is an EVAL).
    browser.get("/counter").await;
    browser.get("/counter").await;
    browser.post_form("/login", "user=warmup").await;
    let mut monitor = Monitor::start(&server).await;
    let mut fresh = Browser::new(app.clone());
    // (row, round trips, writing round trips), as in docs/guarantees.md.
    let mut rows: Vec<(&str, usize, usize)> = Vec::new();
    let mut row = |name: &'static str, received: &Received| {
        rows.push((name, received.round_trips(), received.writing_round_trips()));
    };

    fresh.get("/health").await;
    let untouched = monitor.take().await;
    row("handler never touches the session", &untouched);

    let peek = fresh.get("/counter/peek").await;
    assert_eq!(peek.body, "0");
    let no_cookie = monitor.take().await;
    row("no cookie, handler only reads", &no_cookie);

    browser.get("/counter/peek").await;
    let read = monitor.take().await;
    assert_eq!(read.0.len(), 1, "one HGETALL, nothing else: {read:?}");
    assert_eq!(read.0[0].name, "hgetall");
    row("cookie, handler only reads", &read);

    browser.get("/counter").await;
    let read_write = monitor.take().await;
    assert_eq!(
        (
            read_write
                .0
                .iter()
                .filter(|c| c.name == "hgetall" && !c.from_script)
                .count(),
            read_write.script_calls(FAST_UPDATE_LUA),
            read_write.script_calls(UPDATE_LUA)
        ),
        (1, 1, 0),
        "a load, then the common write's small script, not update.lua: {read_write:?}"
    );
    assert_eq!(
        read_write.writes(),
        ["hincrby", "hset"],
        "the version, the changed field (its size unchanged), no TTL: {read_write:?}"
    );
    row("cookie, handler reads and writes", &read_write);

    browser.put("/kv/a", "1").await;
    let blind_write = monitor.take().await;
    assert_eq!(blind_write.script_calls(UPDATE_LUA), 1, "{blind_write:?}");
    assert_eq!(
        blind_write.writes(),
        vec!["hset"],
        "the TTL is fresh: no PEXPIRE and no index upkeep"
    );
    row("cookie, handler writes without reading", &blind_write);

    browser.post_form("/login", "user=alice").await;
    let login = monitor.take().await;
    assert_eq!(login.script_calls(CREATE_LUA), 1, "{login:?}");
    assert!(
        login.0.iter().all(|c| c.name != "rename"),
        "no RENAME: {login:?}"
    );
    row("login (cycle_id)", &login);

    for (name, round_trips, writes) in &rows {
        println!("{name}: round trips {round_trips}, writes {writes}");
    }
    assert_eq!(
        rows,
        vec![
            ("handler never touches the session", 0, 0),
            ("no cookie, handler only reads", 0, 0),
            ("cookie, handler only reads", 1, 0),
            ("cookie, handler reads and writes", 2, 1),
            ("cookie, handler writes without reading", 1, 1),
            ("login (cycle_id)", 1, 1),
        ]
    );
}

#[tokio::test]
async fn reads_are_one_hgetall_and_roll_the_ttl_only_when_it_runs_low() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let redis = server.probe().await;
    let mut browser = Browser::new(app);
    browser.post_form("/login", "user=alice").await;
    let key = session_key("session:", browser.cookie.as_ref().unwrap());
    // As if a tenth of the idle timeout had passed since the last write.
    let make_due = || async {
        support::leave_a_minute(&redis, &key).await;
        let _: () = redis
            .pexpire("session:user:alice", 60_000, None)
            .await
            .unwrap();
    };
    make_due().await;
    browser.get("/me").await; // the server caches the touch script on its first use
    let mut monitor = Monitor::start(&server).await;

    browser.get("/me").await;
    let fresh = monitor.take().await;
    let names: Vec<&str> = fresh.0.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["hgetall"],
        "a read of a fresh session is one plain command"
    );

    make_due().await;
    monitor.take().await;
    browser.get("/me").await;
    let low = monitor.take().await;
    assert_eq!(
        (low.round_trips(), low.script_calls(TOUCH_LUA)),
        (2, 1),
        "the read, then the touch: {low:?}"
    );
    assert_eq!(
        low.writes(),
        vec!["pexpire", "hset", "zadd", "zremrangebyscore", "pexpire"],
        "session TTL, its $expires and its index entry rolled, the index pruned"
    );
    assert_eq!(low.writing_round_trips(), 1, "the touch is the one write");
    let ttl: i64 = redis.pttl(&key).await.unwrap();
    assert!(
        ttl > 7_100_000,
        "rolled back to the idle timeout, got {ttl}"
    );
    let expires: String = redis.hget(&key, "$expires").await.unwrap();
    assert!(expires.parse::<i64>().unwrap() > support::unix_ms() + 7_100_000);
    let index_ttl: i64 = redis.pttl("session:user:alice").await.unwrap();
    assert!(
        index_ttl > 7_100_000,
        "the index outlives its sessions, got {index_ttl}"
    );

    monitor.take().await; // this test's own checks above
    browser.get("/me").await;
    let after = monitor.take().await;
    assert_eq!(
        (after.round_trips(), after.writes().len()),
        (1, 0),
        "rolled once, not again: {after:?}"
    );
}

#[tokio::test]
async fn typed_fields_are_hash_fields_and_only_changed_ones_are_sent() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let redis = server.probe().await;
    let mut browser = Browser::new(app.clone());
    browser.put("/test/prefs/items", "tea").await;
    let key = session_key("session:", browser.cookie.as_deref().unwrap());
    let hash: HashMap<String, String> = redis.hgetall(&key).await.unwrap();
    assert_eq!(
        (hash["items"].as_str(), hash["theme"].as_str()),
        (r#"["tea"]"#, r#""""#)
    );
    // The update script cached by the server (its first use is an EVAL), by another session.
    let mut other = Browser::new(app.clone());
    other.put("/test/prefs/items", "tea").await;
    other.put("/test/prefs/items", "tea").await;

    let mut monitor = Monitor::start(&server).await;
    browser.put("/test/prefs/items", "cake").await;
    let received = monitor.take().await;
    // A read, then the write as a transaction of plain commands: its HSET carries the fields.
    let save = received
        .0
        .iter()
        .find(|c| c.name == "evalsha" && c.line.contains(FAST_UPDATE_LUA))
        .expect("one save");
    assert!(
        save.line.contains(r#""[\"tea\",\"cake\"]""#),
        "{}",
        save.line
    );
    assert!(
        !save.line.contains("\"theme\""),
        "the unchanged field is not sent: {}",
        save.line
    );
    assert_eq!(
        (received.round_trips(), received.writes()),
        (2, vec!["hincrby", "hset", "hincrby"]),
        "a load, then one save: the version, HSET of what changed, the size"
    );
}

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

/// The device list is one script on one server (after the load that finds the user): the index
/// and every session it names read in one step, as are ending one device and all the others.
#[tokio::test]
async fn the_device_list_and_ending_devices_are_one_script_each() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browsers: Vec<Browser> = (0..3).map(|_| Browser::new(app.clone())).collect();
    for browser in &mut browsers {
        browser.post_form("/login", "user=alice").await;
    }
    // Warm the script cache.
    browsers[2].get("/sessions").await;

    let mut monitor = Monitor::start(&server).await;
    let listed = browsers[0].get("/sessions").await;
    let received = monitor.take().await;
    let devices: Vec<serde_json::Value> = serde_json::from_str(&listed.body).unwrap();
    assert_eq!(devices.len(), 3);
    assert_eq!(
        (received.round_trips(), received.script_calls("devices")),
        (2, 1),
        "{received:?}"
    );
    assert!(!received
        .0
        .iter()
        .any(|c| !c.from_script && c.name == "hmget"));

    let other = devices.iter().find(|d| d["current"] == false).unwrap()["id"].clone();
    let path = format!("/sessions/{}", other.as_str().unwrap());
    assert_eq!(
        browsers[0].delete(&path).await.status,
        StatusCode::NO_CONTENT
    );
    let received = monitor.take().await;
    assert_eq!(
        (received.round_trips(), received.script_calls("end_device")),
        (2, 1),
        "{received:?}"
    );
    let reply = browsers[0].post_form("/logout-others", "").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let received = monitor.take().await;
    assert_eq!(
        (received.round_trips(), received.script_calls("end_others")),
        (2, 1),
        "{received:?}"
    );
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

/// A CSRF token is derived, not stored: issuing and checking tokens on a session costs its load
/// and nothing else.
#[tokio::test]
async fn csrf_tokens_cost_one_load_and_no_write() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app);
    browser.put("/kv/a", "1").await;
    let mut monitor = Monitor::start(&server).await;
    let first = browser.get("/csrf").await.body;
    let second = browser.get("/csrf").await.body;
    for token in [&first, &second] {
        let headers = [("x-csrf-token", token.as_str())];
        let reply = browser.post_with_headers("/csrf/check", &headers).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
    }
    let received = monitor.take().await;
    assert_eq!(received.writes(), Vec::<&str>::new(), "{received:?}");
    assert_eq!(
        received.round_trips(),
        4,
        "one load per request: {received:?}"
    );
}

#[tokio::test]
async fn malformed_cookies_never_reach_redis() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut real = Browser::new(app.clone());
    real.get("/counter").await;
    let cases = support::hostile_cookies(real.cookie.as_ref().unwrap());
    let mut monitor = Monitor::start(&server).await;
    for case in &cases {
        let reply = Browser::new(app.clone())
            .send_raw_cookies("/counter/peek", &[case])
            .await;
        assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "0"));
    }
    let received = monitor.take().await;
    assert_eq!(received.0.len(), 0, "{received:?}");
}

/// The body limit the demo's routes run under: the demo sets none, so axum's default (2 MiB) holds.
const BODY_LIMIT: usize = 2 * 1024 * 1024;

#[tokio::test]
async fn an_oversized_body_is_refused_without_touching_the_session() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app);
    // Created, then updated once: the update script's first use is an EVAL.
    browser.put("/kv/a", "1").await;
    browser.put("/kv/a", "1").await;
    let key = session_key("session:", browser.cookie.as_ref().unwrap());
    let redis = server.probe().await;
    let before = support::content(redis.hgetall(&key).await.unwrap());
    let mut monitor = Monitor::start(&server).await;

    // One byte past the body limit: refused before the handler runs, so nothing reaches Redis.
    let reply = browser.put("/kv/big", &"x".repeat(BODY_LIMIT + 1)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let received = monitor.take().await;
    assert_eq!(received.0.len(), 0, "{received:?}");

    // At the body limit the handler runs, and the session's own limit (65,536 bytes by default)
    // refuses the change whole: one script call that writes nothing.
    let reply = browser.put("/kv/big", &"x".repeat(BODY_LIMIT)).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "session too large")
    );
    let received = monitor.take().await;
    assert_eq!(
        (received.round_trips(), received.writes().len()),
        (1, 0),
        "{received:?}"
    );
    assert_eq!(support::content(redis.hgetall(&key).await.unwrap()), before);
    assert_eq!(browser.get("/kv/a").await.body, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_read_sends_nothing_and_a_hot_read_write_is_one_round_trip() {
    let server = RedisServer::start();
    let a = Instance::start(&server.url(), |l| l).await;
    let mut browser = a.browser(None);
    // Created, then updated once, so that Redis knows both scripts before counting.
    browser.get("/counter").await;
    browser.get("/counter").await;
    assert_eq!(a.warm(&mut browser, "/counter/peek").await, "2");
    let mut monitor = Monitor::start(&server).await;

    let before = a.hits();
    assert_eq!(browser.get("/counter/peek").await.body, "2");
    let read = monitor.take().await;
    assert_eq!(
        (read.0.len(), a.hits() - before),
        (0, 1),
        "a hot read: {read:?}"
    );

    assert_eq!(browser.get("/counter").await.body, "3");
    let read_write = monitor.take().await;
    assert_eq!(
        (
            read_write.round_trips(),
            read_write.script_calls(FAST_UPDATE_LUA),
            read_write.writes()
        ),
        (1, 1, vec!["hincrby", "hset"]),
        "a hot read + write is the save alone, the common write's small script: {read_write:?}"
    );

    // Its own save kept it hot, with the value it saved.
    let before = a.hits();
    assert_eq!(browser.get("/counter/peek").await.body, "3");
    let after_save = monitor.take().await;
    assert_eq!((after_save.0.len(), a.hits() - before), (0, 1));
}

/// The round trips every master received, each named by its first command (a script's call, or a
/// transaction's `MULTI`).
async fn round_trips(monitors: &mut [Monitor]) -> (usize, Vec<String>) {
    let received = Monitor::take_all(monitors).await;
    let calls: Vec<String> = received
        .calls()
        .iter()
        .map(|call| call[0].name.clone())
        .collect();
    (calls.len(), calls)
}

/// docs/scaling.md: on a cluster a request costs what it costs on one server, except that a
/// user's index lives on its own slot (one more call when it changes) and a cycle takes the old
/// session and writes the new one (two calls). Counted with `MONITOR` on every master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_on_a_cluster_counted_on_every_master() {
    let cluster = Cluster::start();
    let app = support::app_for(&cluster.url()).await;
    let mut warm = Browser::new(app.clone());
    // Every script cached on every master (a script's first use on a server is an EVAL).
    for i in 0..30 {
        let mut b = Browser::new(app.clone());
        b.get("/counter").await;
        b.get("/counter").await;
        b.post_form("/login", &format!("user=warm{i}")).await;
        b.get("/counter").await;
        b.post_form("/logout", "").await;
    }
    warm.get("/counter").await;
    let mut monitors = Vec::new();
    for port in cluster.masters() {
        monitors.push(Monitor::start(cluster.node(port)).await);
    }
    let mut browser = Browser::new(app.clone());
    let mut rows = Vec::new();

    browser.get("/health").await;
    rows.push(("no session", round_trips(&mut monitors).await));
    browser.get("/counter").await;
    rows.push(("create", round_trips(&mut monitors).await));
    browser.get("/counter/peek").await;
    rows.push(("cookie, read", round_trips(&mut monitors).await));
    browser.get("/counter").await;
    rows.push(("cookie, read + write", round_trips(&mut monitors).await));
    browser.put("/kv/a", "1").await;
    rows.push(("cookie, blind write", round_trips(&mut monitors).await));
    browser.post_form("/login", "user=alice").await;
    rows.push((
        "login: read, write new, delete old, index",
        round_trips(&mut monitors).await,
    ));
    browser.get("/counter").await;
    rows.push((
        "bound session, read + write",
        round_trips(&mut monitors).await,
    ));
    browser.post_form("/logout", "").await;
    rows.push(("logout: take, index", round_trips(&mut monitors).await));

    for (row, (count, calls)) in &rows {
        println!("cluster, {row}: {count} round trips {calls:?}");
    }
    let counts: Vec<(&str, usize)> = rows.iter().map(|(row, (n, _))| (*row, *n)).collect();
    assert_eq!(
        counts,
        vec![
            ("no session", 0),
            ("create", 1),
            ("cookie, read", 1),
            ("cookie, read + write", 2),
            ("cookie, blind write", 1),
            ("login: read, write new, delete old, index", 4),
            ("bound session, read + write", 2),
            ("logout: take, index", 2),
        ]
    );
}

/// The `n`th named argument (from 1) of the one call of `script` that `received` holds:
/// `EVALSHA sha 1 key name arg1 arg2 …`.
fn script_arg(received: &Received, script: &str, n: usize) -> String {
    let calls: Vec<Vec<String>> = received
        .0
        .iter()
        .filter(|c| !c.from_script && c.name == "evalsha")
        .map(|c| c.args())
        .filter(|args| args.get(4).map(String::as_str) == Some(script))
        .collect();
    assert_eq!(calls.len(), 1, "one call of {script}: {received:?}");
    calls[0][4 + n].clone()
}

/// Requests that do not lock send what they sent before the lock existed: the same round trips,
/// no read of the lock's fields, and an empty fencing token in the save. A request that locks adds
/// its take and its release, each one single-key script, and its save carries the token.
#[tokio::test]
async fn only_a_request_that_locks_pays_for_the_lock() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app);
    // A session, and every script the requests below use cached by the server.
    browser.get("/counter").await;
    browser.get("/counter").await;
    browser.put("/kv/a", "1").await;
    browser.post_form("/critical?hold_ms=0", "").await;
    let mut monitor = Monitor::start(&server).await;
    let untouched_by_the_lock = |received: &Received| {
        assert_eq!(received.script_calls("lock"), 0, "{received:?}");
        assert!(
            !received.any_line_contains("$fence") && !received.any_line_contains("$lock"),
            "{received:?}"
        );
    };

    assert_eq!(browser.get("/counter").await.body, "3");
    let read_write = monitor.take().await;
    let names: Vec<&str> = read_write
        .0
        .iter()
        .filter(|c| !c.from_script)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["hgetall", "evalsha"], "{read_write:?}");
    assert_eq!(read_write.script_calls(FAST_UPDATE_LUA), 1);
    // fast_update.lua's named arguments: delta, track, fence.
    assert_eq!(script_arg(&read_write, FAST_UPDATE_LUA, 3), "");
    untouched_by_the_lock(&read_write);

    // A write without a read: no session as read to plan the lean script from.
    assert_eq!(
        browser.put("/kv/b", "2").await.status,
        StatusCode::NO_CONTENT
    );
    let blind_write = monitor.take().await;
    assert_eq!(blind_write.round_trips(), 1, "{blind_write:?}");
    // update.lua's ninth named argument is the fence.
    assert_eq!(script_arg(&blind_write, UPDATE_LUA, 9), "");
    untouched_by_the_lock(&blind_write);

    assert_eq!(browser.post_form("/critical?hold_ms=0", "").await.body, "2");
    let locked = monitor.take().await;
    let calls: Vec<String> = locked
        .calls()
        .iter()
        .map(|call| {
            let args = call[0].args();
            match call[0].name.as_str() {
                "evalsha" => args[4].clone(),
                name => name.to_owned(),
            }
        })
        .collect();
    assert_eq!(
        calls,
        ["lock", "hgetall", FAST_UPDATE_LUA, "lock"],
        "{locked:?}"
    );
    let fence = server.cli(&[
        "hget",
        &session_key("session:", browser.cookie.as_deref().unwrap()),
        "$fence",
    ]);
    assert_eq!(fence.trim(), "2", "the second lock taken on the session");
    assert_eq!(
        script_arg(&locked, FAST_UPDATE_LUA, 3),
        "2",
        "the save carries the token"
    );
}

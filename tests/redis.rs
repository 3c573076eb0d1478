//! What only a real Redis can show: the key layout another language reads, TTLs on every key, the
//! round-trip budget of DESIGN §5 counted with `MONITOR`, corrupt data, and an unavailable server.

mod support;

use std::collections::HashMap;
use std::time::{Duration as StdDuration, Instant};

use axum::http::StatusCode;
use axum_redis_session::fred::prelude::*;
use axum_redis_session::fred::types::{ClusterHash, CustomCommand};
use axum_redis_session::{RedisStore, SessionLayer};
use support::{session_key, Browser, Gate, Monitor, Received, RedisServer};

const TOUCH_LUA: &str = "touch";
const SAVE_LUA: &str = "save";

/// Round trips of the named script among what Redis received. Each script's first argument is its
/// name: `EVALSHA sha numkeys key… name …`.
fn script_calls(received: &Received, script: &str) -> usize {
    received
        .0
        .iter()
        .filter(|c| !c.from_script && (c.name == "evalsha" || c.name == "eval"))
        .filter(|c| {
            let quoted: Vec<&str> = c.line.split('"').skip(1).step_by(2).collect();
            let keys: usize = quoted.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
            quoted.get(3 + keys) == Some(&script)
        })
        .count()
}

#[tokio::test]
async fn layout_is_one_hash_per_session_keyed_by_the_token_hash() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let redis = server.probe().await;
    let mut browser = Browser::new(app);
    browser.get("/counter").await;
    browser.get("/counter").await;
    browser.put("/kv/greeting", "hello").await;
    browser.post_form("/login", "user=alice").await;
    let token = browser.cookie.clone().unwrap();

    let key = session_key("session:", &token);
    let hash: HashMap<String, String> = redis.hgetall(&key).await.unwrap();
    assert_eq!(
        hash["count"], "2",
        "HGET {key} count gives the JSON of the value"
    );
    assert_eq!(hash["greeting"], "\"hello\"");
    assert_eq!(hash["$user"], "alice");
    let created: i64 = hash["$created"].parse().expect("creation time in unix ms");
    assert!(created > 1_700_000_000_000);

    let keys: Vec<String> = redis
        .custom(
            CustomCommand::new_static("KEYS", ClusterHash::Random, false),
            vec!["*"],
        )
        .await
        .unwrap();
    let key_id = key.trim_start_matches("session:");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&"session:user:alice".to_owned()));
    let index: Vec<(String, f64)> = redis
        .zrange("session:user:alice", 0, -1, None, false, None, true)
        .await
        .unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(index[0].0, key_id, "the index holds key ids, not tokens");
    for key in &keys {
        assert!(!key.contains(&token));
    }
    let ttl: i64 = redis.pttl(&key).await.unwrap();
    assert!(
        ttl > 7_100_000 && ttl <= 7_200_000,
        "session TTL is the idle timeout, got {ttl}"
    );
    let index_ttl: i64 = redis.pttl("session:user:alice").await.unwrap();
    assert!(
        index_ttl > 7_200_000 && index_ttl <= 7_920_000,
        "index outlives its sessions, got {index_ttl}"
    );
}

#[tokio::test]
async fn typed_fields_are_hash_fields_and_only_changed_ones_are_sent() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let redis = server.probe().await;
    let mut browser = Browser::new(app);
    browser.put("/test/prefs/items", "tea").await;
    let key = session_key("session:", browser.cookie.as_deref().unwrap());
    let hash: HashMap<String, String> = redis.hgetall(&key).await.unwrap();
    assert_eq!(
        (hash["items"].as_str(), hash["theme"].as_str()),
        (r#"["tea"]"#, r#""""#)
    );

    let mut monitor = Monitor::start(&server).await;
    browser.put("/test/prefs/items", "cake").await;
    let received = monitor.take().await;
    let save = received
        .0
        .iter()
        .find(|c| c.name == "evalsha")
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
        (2, vec!["hset"]),
        "a load, then one save: HSET of what changed (the TTL is fresh)"
    );
}

#[tokio::test]
async fn legacy_readers_can_opt_out_of_hashed_key_ids() {
    let server = RedisServer::start();
    let store = support::store_on(&server).await.with_key_prefix("app:");
    let (app, _) = support::app_on(store, |l| l.with_hashed_key_ids(false)).await;
    let mut browser = Browser::new(app);
    browser.get("/counter").await;
    let token = browser.cookie.clone().unwrap();
    let count: Option<String> = server
        .probe()
        .await
        .hget(format!("app:{token}"), "count")
        .await
        .unwrap();
    assert_eq!(count.as_deref(), Some("1"));
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
        let soon = unix_ms() + 60_000;
        let _: () = redis
            .hset(&key, ("$expires", soon.to_string()))
            .await
            .unwrap();
        let _: () = redis.pexpire(&key, 60_000, None).await.unwrap();
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
        (low.round_trips(), script_calls(&low, TOUCH_LUA)),
        (2, 1),
        "the read, then the touch: {low:?}"
    );
    assert_eq!(
        low.writes(),
        vec!["pexpire", "hset", "zadd", "zremrangebyscore", "pexpire"],
        "session TTL, its $expires and its index entry rolled, the index pruned"
    );
    let ttl: i64 = redis.pttl(&key).await.unwrap();
    assert!(
        ttl > 7_100_000,
        "rolled back to the idle timeout, got {ttl}"
    );
    let expires: String = redis.hget(&key, "$expires").await.unwrap();
    assert!(expires.parse::<i64>().unwrap() > unix_ms() + 7_100_000);
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

fn unix_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    now.as_millis() as i64
}

#[tokio::test]
async fn round_trip_budget_of_design_section_5() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app.clone());
    // A session to use, and every script cached by the server (its first use is an EVAL).
    browser.get("/counter").await;
    browser.post_form("/login", "user=warmup").await;
    let mut monitor = Monitor::start(&server).await;
    let mut fresh = Browser::new(app.clone());

    fresh.get("/health").await;
    let untouched = monitor.take().await;
    assert_eq!(
        (untouched.round_trips(), untouched.writes().len()),
        (0, 0),
        "no session touched: {untouched:?}"
    );

    let peek = fresh.get("/counter/peek").await;
    assert_eq!(peek.body, "0");
    let no_cookie = monitor.take().await;
    assert_eq!(
        (no_cookie.round_trips(), no_cookie.writes().len()),
        (0, 0),
        "no cookie, read: {no_cookie:?}"
    );

    browser.get("/counter/peek").await;
    let read = monitor.take().await;
    assert_eq!(
        (read.round_trips(), read.0.len()),
        (1, 1),
        "cookie, read: one HGETALL, nothing else: {read:?}"
    );
    assert!(
        read.writes().is_empty(),
        "a read of a fresh session writes nothing: {read:?}"
    );

    browser.get("/counter").await;
    let read_write = monitor.take().await;
    assert_eq!(
        read_write.round_trips(),
        2,
        "cookie, read + write: {read_write:?}"
    );
    assert_eq!(
        (
            read_write
                .0
                .iter()
                .filter(|c| c.name == "hgetall" && !c.from_script)
                .count(),
            script_calls(&read_write, SAVE_LUA)
        ),
        (1, 1)
    );

    browser.put("/kv/a", "1").await;
    let blind_write = monitor.take().await;
    assert_eq!(
        (
            blind_write.round_trips(),
            script_calls(&blind_write, SAVE_LUA)
        ),
        (1, 1),
        "{blind_write:?}"
    );
    assert_eq!(
        blind_write.writes(),
        vec!["hset"],
        "the TTL is fresh: no PEXPIRE and no index upkeep"
    );

    browser.post_form("/login", "user=alice").await;
    let login = monitor.take().await;
    assert_eq!(
        (login.round_trips(), script_calls(&login, SAVE_LUA)),
        (1, 1),
        "login (cycle id): {login:?}"
    );
    assert!(
        login.0.iter().all(|c| c.name != "rename"),
        "no RENAME: {login:?}"
    );

    for received in [
        &untouched,
        &no_cookie,
        &read,
        &read_write,
        &blind_write,
        &login,
    ] {
        println!(
            "round trips {} writes {:?}",
            received.round_trips(),
            received.writes()
        );
    }
}

#[tokio::test]
async fn no_token_ever_reaches_redis() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut monitor = Monitor::start(&server).await;
    let mut browser = Browser::new(app);
    let mut tokens = Vec::new();
    for step in ["counter", "login", "kv", "flash", "logout-everywhere"] {
        match step {
            "counter" => browser.get("/counter").await,
            "login" => browser.post_form("/login", "user=alice").await,
            "kv" => browser.put("/kv/a", "b").await,
            "flash" => browser.post_form("/flash", "message=hi").await,
            _ => browser.post_form("/logout-everywhere", "").await,
        };
        tokens.extend(browser.cookie.clone());
    }
    let received = monitor.take().await;
    assert!(
        received.0.len() > 10,
        "the scenario reached Redis: {received:?}"
    );
    for token in &tokens {
        assert!(
            !received.any_line_contains(token),
            "token {token} seen by MONITOR"
        );
    }
}

#[tokio::test]
async fn destroy_removes_the_key_and_its_index_entry() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let redis = server.probe().await;
    let (mut laptop, mut phone) = (Browser::new(app.clone()), Browser::new(app));
    laptop.post_form("/login", "user=alice").await;
    phone.post_form("/login", "user=alice").await;
    let laptop_key = session_key("session:", laptop.cookie.as_ref().unwrap());
    laptop.post_form("/logout", "").await;
    assert_eq!(redis.exists::<i64, _>(&laptop_key).await.unwrap(), 0);
    let members: Vec<String> = redis
        .zrange("session:user:alice", 0, -1, None, false, None, false)
        .await
        .unwrap();
    let phone_id = session_key("", phone.cookie.as_ref().unwrap());
    assert_eq!(
        members,
        vec![phone_id],
        "only the live session stays indexed"
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

#[tokio::test]
async fn redis_down_answers_503_fast_and_recovers_without_restart() {
    let port = support::free_port();
    let store = RedisStore::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap()
        .with_command_timeout(time::Duration::milliseconds(500));
    let layer = SessionLayer::new(store);
    let app = support::app(layer, Gate::default());
    let mut browser = Browser::new(app);

    assert_eq!(browser.get("/health").await.status, StatusCode::OK);
    let started = Instant::now();
    let reply = browser.get("/counter").await;
    let took = started.elapsed();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable")
    );
    assert!(took < StdDuration::from_millis(1000), "503 after {took:?}");

    let _server = RedisServer::start_on(port, &[]);
    let (reply, took) = browser
        .get_until_ok("/counter", StdDuration::from_secs(10))
        .await;
    assert_eq!(reply.body, "1");
    println!("recovered {took:?} after the server came up");
}

#[tokio::test]
async fn a_failed_save_answers_503_never_the_handlers_200() {
    let mut server = RedisServer::start();
    let store = support::store_on(&server).await;
    let store = store.with_command_timeout(time::Duration::milliseconds(300));
    let (app, gate) = support::app_on(store, |l| l).await;
    let mut browser = Browser::new(app);
    browser.get("/counter").await;
    let mut slow = browser.clone();
    let pending = tokio::spawn(async move { slow.get("/test/slow-counter").await });
    gate.wait_arrival().await;
    server.stop();
    gate.release();
    let reply = pending.await.unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable")
    );
    assert_eq!(reply.set_cookie(), None);
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

#[tokio::test]
async fn a_typical_session_costs_a_few_hundred_bytes() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app);
    browser.post_form("/login", "user=alice@example.com").await;
    browser.get("/counter").await;
    browser
        .put("/kv/cart", r#"["sku-1042","sku-2210","sku-3307"]"#)
        .await;
    browser.put("/kv/theme", "dark").await;
    let key = session_key("session:", browser.cookie.as_ref().unwrap());
    let bytes: u64 = server
        .cli(&["memory", "usage", &key, "samples", "0"])
        .trim()
        .parse()
        .unwrap();
    let index: u64 = server
        .cli(&[
            "memory",
            "usage",
            "session:user:alice@example.com",
            "samples",
            "0",
        ])
        .trim()
        .parse()
        .unwrap();
    println!("MEMORY USAGE: session {bytes} bytes, user index {index} bytes");
    assert!(bytes < 400, "a typical session takes {bytes} bytes");
}

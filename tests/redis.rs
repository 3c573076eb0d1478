//! What only a real Redis can show: the key layout another language reads, TTLs on every key, the
//! README's round trips per request counted with `MONITOR`, corrupt data, a Redis killed while the
//! app serves, a save that fails, id collisions on create, and what a session costs in memory.

mod support;

use std::collections::HashMap;
use std::time::{Duration as StdDuration, Instant};

use axum::http::StatusCode;
use axum_redis_session::fred::prelude::*;
use axum_redis_session::fred::types::{ClusterHash, CustomCommand};
use axum_redis_session::SessionLayer;
use support::{session_key, Browser, Gate, Monitor, Received, RedisServer};

const TOUCH_LUA: &str = "touch";
const CREATE_LUA: &str = "create";
const UPDATE_LUA: &str = "update";

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

/// Round trips that changed data: client commands that write, or whose script wrote. MONITOR lists
/// a script's own commands right after the call that ran it.
fn writing_round_trips(received: &Received) -> usize {
    let mut count = 0;
    let mut current_writes = false;
    let mut seen_call = false;
    for c in &received.0 {
        let writes = Received(vec![c.clone()]).writes().len() == 1;
        if !c.from_script {
            count += usize::from(seen_call && current_writes);
            seen_call = true;
            current_writes = writes;
        } else {
            current_writes |= writes;
        }
    }
    count + usize::from(seen_call && current_writes)
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
        leave_a_minute(&redis, &key).await;
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
    assert_eq!(writing_round_trips(&low), 1, "the touch is the one write");
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

/// The README's table of round trips and writing round trips per request, row by row.
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
    // (row, round trips, writing round trips), as in the README.
    let mut rows: Vec<(&str, usize, usize)> = Vec::new();
    let mut row = |name: &'static str, received: &Received| {
        rows.push((name, received.round_trips(), writing_round_trips(received)));
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
            script_calls(&read_write, UPDATE_LUA)
        ),
        (1, 1),
        "a load, then one delta script: {read_write:?}"
    );
    row("cookie, handler reads and writes", &read_write);

    browser.put("/kv/a", "1").await;
    let blind_write = monitor.take().await;
    assert_eq!(script_calls(&blind_write, UPDATE_LUA), 1, "{blind_write:?}");
    assert_eq!(
        blind_write.writes(),
        vec!["hset"],
        "the TTL is fresh: no PEXPIRE and no index upkeep"
    );
    row("cookie, handler writes without reading", &blind_write);

    browser.post_form("/login", "user=alice").await;
    let login = monitor.take().await;
    assert_eq!(script_calls(&login, CREATE_LUA), 1, "{login:?}");
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

/// The command timeout of the fault tests below, and the margin RELIABILITY.md states beside it:
/// a session route answers 503 within `FAULT_TIMEOUT + MARGIN_503`.
const FAULT_TIMEOUT_MS: i64 = 500;
const MARGIN_503: StdDuration = StdDuration::from_millis(250);
/// RELIABILITY.md: service resumes within this of Redis answering again. `RedisStore::connect`
/// backs off from 100 ms doubling to 2 s (plus up to 100 ms of jitter) between attempts, so a
/// long outage costs at most one 2.1 s wait, and a request sent just before the reconnect its
/// 500 ms timeout; the rest is margin. (A 10 s cap would cost up to 6 s after this outage.)
const RECOVERY_BOUND: StdDuration = StdDuration::from_secs(4);

/// `GET path` answers 503 with the documented body, within the bound; returns how long it took.
async fn answers_503_in_time(browser: &mut Browser, path: &str) -> StdDuration {
    let bound = StdDuration::from_millis(FAULT_TIMEOUT_MS as u64) + MARGIN_503;
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
    support::wait_until_served(&app, 4, StdDuration::from_secs(10)).await;
    let mut browser = Browser::new(app.clone());
    assert_eq!(browser.get("/counter").await.body, "1");
    assert_eq!(browser.get("/counter").await.body, "2");
    let mut visitor = Browser::new(app.clone());

    server.stop(); // SIGKILL, by PID
    let killed = Instant::now();
    // Through the outage, long enough for the reconnect delay to reach its 2 s cap (attempts come
    // 0.1, 0.3, 0.7, 1.5, 3.1, 5.1, 7.1 s after the kill), so a longer cap would show as a slower
    // recovery: routes that do not touch the session answer at once, session routes 503 in time.
    let mut slowest = StdDuration::ZERO;
    while killed.elapsed() < StdDuration::from_millis(6500) {
        let started = Instant::now();
        assert_eq!(browser.get("/health").await.status, StatusCode::OK);
        assert!(started.elapsed() < StdDuration::from_millis(100));
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
    tokio::time::sleep(StdDuration::from_secs(3)).await;

    let _server = RedisServer::start_on(port, &[]);
    let (reply, took) = browser.get_until_ok("/counter", RECOVERY_BOUND).await;
    assert_eq!(reply.body, "1");
    println!("Redis started late: first success {took:?} after it answered");
    assert!(took < RECOVERY_BOUND, "served after {took:?}");
}

/// RELIABILITY.md: a failed save answers within the command timeout plus this.
const SAVE_TIMEOUT_MS: i64 = 300;
const MARGIN_FAILED_SAVE: StdDuration = StdDuration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_save_answers_503_never_the_handlers_200() {
    // AOF, so that after a restart Redis shows what it held when it was killed.
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = support::url_store(&server.url(), SAVE_TIMEOUT_MS).await;
    let layer = SessionLayer::new(store);
    let (create_gate, cycle_gate) = (Gate::default(), Gate::default());
    let creating = support::app(layer.clone(), create_gate.clone());
    let cycling = support::app(layer, cycle_gate.clone());
    support::wait_until_served(&creating, 4, StdDuration::from_secs(10)).await;
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
    let bound = StdDuration::from_millis(SAVE_TIMEOUT_MS as u64) + MARGIN_FAILED_SAVE;
    println!("failed save: both 503 {took:?} after the handlers returned");
    assert!(took < bound, "503 after {took:?}, over {bound:?}");

    // Nothing was written: the old id still holds the session as it was.
    server.restart();
    let redis = server.probe().await;
    let held: HashMap<String, String> = redis.hgetall(session_key("session:", &old)).await.unwrap();
    assert_eq!(held.get("count").map(String::as_str), Some("1"));
    assert_eq!(held.get("$user"), None, "the login was not applied");
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

/// The README's capacity figures: `MEMORY USAGE` of a typical session and of its user's index,
/// asserted within `MEMORY_MARGIN` of the figure the README prints.
const SESSION_BYTES: u64 = 312;
const INDEX_BYTES: u64 = 168;
const MEMORY_MARGIN: f64 = 0.10;

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
    let fields: Vec<String> = server.probe().await.hkeys(&key).await.unwrap();
    let mut fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["$created", "$expires", "$size", "$user", "$version", "cart", "count", "theme"],
        "the session the README describes"
    );
    let usage = |key: &str| -> u64 {
        server
            .cli(&["memory", "usage", key, "samples", "0"])
            .trim()
            .parse()
            .unwrap()
    };
    let (bytes, index) = (usage(&key), usage("session:user:alice@example.com"));
    println!("MEMORY USAGE: session {bytes} bytes, user index {index} bytes");
    for (what, measured, published) in [
        ("session", bytes, SESSION_BYTES),
        ("index", index, INDEX_BYTES),
    ] {
        let off = (measured as f64 - published as f64).abs() / published as f64;
        assert!(
            off <= MEMORY_MARGIN,
            "{what}: {measured} bytes, the README says {published}"
        );
    }
}

#[tokio::test]
async fn a_persistent_cookie_gets_a_renewed_max_age_when_the_ttl_rolls() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| {
        l.with_persistent_cookie(true)
            .with_idle_timeout(time::Duration::hours(1))
    })
    .await;
    let redis = server.probe().await;
    let mut browser = Browser::new(app);
    let max_age = |reply: &support::Reply| {
        let set = reply.set_cookie().expect("a cookie with a renewed Max-Age");
        cookie::Cookie::parse(set.to_owned())
            .unwrap()
            .max_age()
            .unwrap()
            .whole_seconds()
    };
    let created = browser.get("/counter").await;
    assert!((3590..=3600).contains(&max_age(&created)));
    let token = browser.cookie.clone().unwrap();
    let key = session_key("session:", &token);
    // As if 59 minutes had passed: a minute of life left, so the TTL is due to roll.
    let make_due = || leave_a_minute(&redis, &key);

    assert_eq!(
        browser.get("/counter/peek").await.set_cookie(),
        None,
        "a read of a fresh session sends no cookie"
    );
    make_due().await;
    let touched = browser.get("/counter/peek").await;
    assert!(
        (3590..=3600).contains(&max_age(&touched)),
        "a read that rolls the TTL renews Max-Age: {touched:?}"
    );
    assert_eq!(browser.cookie.as_ref(), Some(&token), "the same session");
    assert_eq!(browser.get("/counter/peek").await.set_cookie(), None);

    make_due().await;
    let written = browser.put("/kv/a", "1").await;
    assert!(
        (3590..=3600).contains(&max_age(&written)),
        "a write that rolls the TTL renews Max-Age: {written:?}"
    );
}

/// README: "Create without collision". A proxy takes the very key the next fresh id hashes to just
/// before the save script runs, so the real script finds it taken; the store must draw another id
/// (up to three in all), never write into the taken key, and answer 503 once three are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_id_that_collides_is_retried_and_the_taken_key_is_never_written() {
    let server = RedisServer::start();
    let squatter = support::Squatter::start(&server).await;
    let store = support::url_store(&squatter.url(), 1000).await;
    let layer = SessionLayer::new(store);
    let app = support::app(layer.clone(), Gate::default());
    support::wait_until_served(&app, 4, StdDuration::from_secs(10)).await;
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

/// Leaves the session under `key` a minute to live, in Redis and in its `$expires`, as if most of
/// its idle timeout had passed: the next read must roll the TTL.
async fn leave_a_minute(redis: &Client, key: &str) {
    let soon = unix_ms() + 60_000;
    let _: () = redis
        .hset(key, ("$expires", soon.to_string()))
        .await
        .unwrap();
    let _: () = redis.pexpire(key, 60_000, None).await.unwrap();
}

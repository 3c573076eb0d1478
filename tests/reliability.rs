//! Faults injected for real and races on one session: a stalled Redis, a restart with AOF, a full
//! Redis, 64 clients on one session, logout-everywhere and id cycling racing in-flight writes.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum_redis_session::fred::prelude::*;
use axum_redis_session::fred::types::{ClusterHash, CustomCommand};
use support::{session_key, Browser, Gate, Monitor, RedisServer, MANY_FIELDS};

/// A session's hash without the metadata that every save rewrites (its expiry, version and size).
fn content(mut hash: HashMap<String, String>) -> HashMap<String, String> {
    for field in ["$expires", "$version", "$size"] {
        hash.remove(field);
    }
    hash
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
    let before = content(redis.hgetall(&key).await.unwrap());
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
    let after = content(redis.hgetall(&key).await.unwrap());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_on_one_session_keep_every_write() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app);
    browser.put("/kv/start", "0").await;
    let clients: Vec<_> = (0..64)
        .map(|client| {
            let mut b = browser.clone();
            tokio::spawn(async move {
                for write in 0..100 {
                    let status = b
                        .put(&format!("/kv/c{client}"), &write.to_string())
                        .await
                        .status;
                    assert_eq!(status, StatusCode::NO_CONTENT);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    for client in 0..64 {
        assert_eq!(
            browser.get(&format!("/kv/c{client}")).await.body,
            "99",
            "client {client}'s last write"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_racing_in_flight_writes_brings_no_session_back() {
    let server = RedisServer::start();
    let layer = axum_redis_session::SessionLayer::new(support::store_on(&server).await);
    let app = support::app(layer.clone(), Gate::default());
    let mut devices: Vec<Browser> = (0..4).map(|_| Browser::new(app.clone())).collect();
    for device in &mut devices {
        device.post_form("/login", "user=alice").await;
        device.put("/kv/x", "0").await;
    }
    let old_keys: Vec<String> = devices
        .iter()
        .map(|d| session_key("session:", d.cookie.as_ref().unwrap()))
        .collect();

    // On every device, two writes held inside their handlers while the logout runs: one that read
    // the session first, one that writes blindly. Each has its own gate, so each is known to be in
    // the window before the logout starts.
    let mut gates = Vec::new();
    let mut reading = Vec::new();
    let mut blind = Vec::new();
    for device in &devices {
        let (read_gate, blind_gate) = (Gate::default(), Gate::default());
        let mut reader = Browser::with_cookie(
            support::app(layer.clone(), read_gate.clone()),
            device.cookie.clone(),
        );
        let mut writer = Browser::with_cookie(
            support::app(layer.clone(), blind_gate.clone()),
            device.cookie.clone(),
        );
        reading.push(tokio::spawn(async move {
            let reply = reader.get("/test/slow-counter").await;
            (reply, reader.cookie)
        }));
        blind.push(tokio::spawn(async move {
            let reply = writer.put("/test/slow-put", "late").await;
            (reply, writer.cookie)
        }));
        gates.extend([read_gate, blind_gate]);
    }
    for gate in &gates {
        gate.wait_arrival().await;
    }
    assert_eq!(
        devices[0].post_form("/logout-everywhere", "").await.status,
        StatusCode::NO_CONTENT
    );
    for gate in &gates {
        gate.release();
    }

    // A write computed from a session read before the logout is refused.
    for task in reading {
        let (reply, _) = task.await.unwrap();
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::CONFLICT, "session ended")
        );
    }
    // A blind write starts a new, anonymous session under a new id.
    let mut fresh_keys = Vec::new();
    for task in blind {
        let (reply, cookie) = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
        let key = session_key("session:", &cookie.expect("a new session's cookie"));
        assert!(!old_keys.contains(&key), "a new id");
        fresh_keys.push(key);
    }

    let redis = server.probe().await;
    for key in &old_keys {
        assert_eq!(
            redis.exists::<i64, _>(key).await.unwrap(),
            0,
            "{key} came back"
        );
    }
    for key in &fresh_keys {
        let fields: HashMap<String, String> = redis.hgetall(key).await.unwrap();
        assert_eq!(fields.get("slow").map(String::as_str), Some("\"late\""));
        assert_eq!(fields.get("$user"), None, "{key} is bound to a user");
        assert_eq!(fields.get("x"), None, "{key} holds the old session's data");
    }
    let keys: Vec<String> = redis
        .custom(
            CustomCommand::new_static("KEYS", ClusterHash::Random, false),
            vec!["session:*"],
        )
        .await
        .unwrap();
    for key in keys.iter().filter(|k| !k.starts_with("session:user:")) {
        let owner: Option<String> = redis.hget(key, "$user").await.unwrap();
        assert_ne!(owner.as_deref(), Some("alice"), "{key} is still alice's");
    }
    for mut device in devices {
        assert_eq!(device.get("/me").await.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycling_the_id_while_the_old_id_is_in_use_loses_no_acknowledged_write() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app.clone());
    browser.put("/kv/base", "0").await;
    let old = browser.cookie.clone().unwrap();

    // Each writer records, for every acknowledged write, the cookie it held once the answer came.
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let mut b = browser.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0..20 {
                    let key = format!("w{writer}-{i}");
                    let reply = b.put(&format!("/kv/{key}"), "v").await;
                    assert_ne!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
                    if reply.status == StatusCode::NO_CONTENT {
                        acknowledged.push((key, b.cookie.clone().unwrap()));
                    }
                }
                acknowledged
            })
        })
        .collect();
    assert_eq!(
        browser.post_form("/login", "user=alice").await.status,
        StatusCode::NO_CONTENT
    );
    let cycled = browser.cookie.clone().unwrap();
    assert_ne!(cycled, old);

    let mut checked = 0;
    for writer in writers {
        for (key, cookie) in writer.await.unwrap() {
            // A write that went in under the old id moved with the session; any other went into the
            // new session whose cookie the writer was handed.
            let holder = if cookie == old {
                cycled.clone()
            } else {
                cookie
            };
            let mut reader = Browser::with_cookie(app.clone(), Some(holder));
            assert_eq!(
                reader.get(&format!("/kv/{key}")).await.body,
                "v",
                "{key} was acknowledged"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 160, "every write was acknowledged");
    let redis = server.probe().await;
    assert_eq!(
        redis
            .exists::<i64, _>(session_key("session:", &old))
            .await
            .unwrap(),
        0,
        "old id dead"
    );
    let mut stale = Browser::with_cookie(app, Some(old));
    assert_eq!(
        stale.get("/kv/base").await.status,
        StatusCode::NOT_FOUND,
        "the old id is refused"
    );
    assert_eq!(
        browser.get("/kv/base").await.body,
        "0",
        "data moved with the id"
    );
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
    let before = content(redis.hgetall(&key).await.unwrap());
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
    assert_eq!(content(redis.hgetall(&key).await.unwrap()), before);
    assert_eq!(browser.get("/kv/a").await.body, "1");
}

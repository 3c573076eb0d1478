//! Faults injected for real and races on one session: a stalled Redis, a restart with AOF, a full
//! Redis, 64 clients on one session, logout-everywhere and id cycling racing in-flight writes.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum_redis_session::fred::prelude::*;
use axum_redis_session::fred::types::{ClusterHash, CustomCommand};
use support::{session_key, Browser, RedisServer};

/// A session's hash without `$expires`, which every write and touch rewrites.
/// A session's hash without the metadata that every save rewrites (its expiry, version and size).
fn content(mut hash: HashMap<String, String>) -> HashMap<String, String> {
    for field in ["$expires", "$version", "$size"] {
        hash.remove(field);
    }
    hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_answers_503_in_time_and_never_half_writes() {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let store = support::store_on(&server).await;
    let store = store.with_command_timeout(time::Duration::milliseconds(300));
    let (app, _) = support::app_on(store, |l| l).await;
    let redis = server.probe().await;
    let mut browser = Browser::new(app);
    browser.put("/kv/a", "1").await;
    browser.put("/kv/b", "1").await;
    let key = session_key("session:", browser.cookie.as_ref().unwrap());
    let before = content(redis.hgetall(&key).await.unwrap());

    server.cli(&["client", "pause", "1500", "all"]);
    let started = Instant::now();
    let reply = browser.put("/kv/a", "2").await;
    let took = started.elapsed();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable")
    );
    assert!(
        took < timeout + Duration::from_millis(500),
        "503 after {took:?}"
    );
    println!("stall: 503 after {took:?} (command timeout {timeout:?})");

    tokio::time::sleep(Duration::from_millis(1600).saturating_sub(started.elapsed())).await;
    let after = content(redis.hgetall(&key).await.unwrap());
    // A command already sent cannot be recalled: once Redis wakes it may run, but only whole.
    let mut applied = before.clone();
    applied.insert("a".into(), "\"2\"".into());
    assert!(
        after == before || after == applied,
        "partial write: {after:?}"
    );
    assert_eq!(after["b"], "\"1\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_with_aof() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = support::store_on(&server).await;
    let store = store.with_command_timeout(time::Duration::milliseconds(300));
    let (app, _) = support::app_on(store, |l| l).await;
    let mut browser = Browser::new(app);
    browser.post_form("/login", "user=alice").await;
    browser.put("/kv/cart", "3 items").await;

    server.restart();
    let (reply, took) = browser
        .get_until_ok("/kv/cart", Duration::from_secs(10))
        .await;
    assert_eq!(reply.body, "3 items");
    println!("AOF restart: session readable {took:?} after Redis came back");
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
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut devices: Vec<Browser> = (0..4).map(|_| Browser::new(app.clone())).collect();
    for device in &mut devices {
        device.post_form("/login", "user=alice").await;
        device.put("/kv/x", "0").await;
    }
    let old_keys: Vec<String> = devices
        .iter()
        .map(|d| session_key("session:", d.cookie.as_ref().unwrap()))
        .collect();
    let writers: Vec<_> = devices
        .iter()
        .map(|device| {
            let mut d = device.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    d.put("/kv/x", &i.to_string()).await;
                    d.get("/counter").await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        devices[0].post_form("/logout-everywhere", "").await.status,
        StatusCode::NO_CONTENT
    );
    for writer in writers {
        writer.await.unwrap();
    }

    let redis = server.probe().await;
    for key in &old_keys {
        assert_eq!(
            redis.exists::<i64, _>(key).await.unwrap(),
            0,
            "{key} came back"
        );
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

#[tokio::test]
async fn an_oversized_body_is_refused_without_touching_the_session() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app);
    browser.put("/kv/a", "1").await;
    // Past axum's default 2 MB body limit: refused before the handler, so nothing reaches Redis.
    let reply = browser.put("/kv/big", &"x".repeat(3 * 1024 * 1024)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(browser.get("/kv/big").await.status, StatusCode::NOT_FOUND);
    assert_eq!(browser.get("/kv/a").await.body, "1");
}

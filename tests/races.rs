//! Concurrent requests on one session, on real Redis: 64 clients writing at once, a logout-everywhere
//! racing in-flight writes, an id cycled while the old id is in use, and on a cluster the order of a
//! cycle's steps across slots, a logout-everywhere landing between them, and the revocation epoch a
//! later login records. Nothing acknowledged is lost, and nothing logged out comes back.

mod support;

use std::collections::HashMap;

use axum::http::StatusCode;
use axum_redis_session::fred::prelude::*;
use axum_redis_session::fred::types::{ClusterHash, CustomCommand};
use support::{session_key, Browser, Cluster, Gate, Monitor, RedisServer};

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

/// Every session key on every master of `cluster`.
fn cluster_session_keys(cluster: &Cluster) -> Vec<String> {
    cluster
        .masters()
        .into_iter()
        .flat_map(|port| support::session_keys(cluster.node(port)))
        .collect()
}

/// Session keys (not indexes) on every master of `cluster`, bound to `user`.
fn sessions_of(cluster: &Cluster, user: &str) -> Vec<String> {
    let mut found = Vec::new();
    for port in cluster.masters() {
        let node = cluster.node(port);
        for key in support::session_keys(node) {
            if node.cli(&["hget", &key, "$user"]).trim() == user {
                found.push(key);
            }
        }
    }
    found
}

/// On a cluster a cycle moves the session across slots in several calls. The old key is deleted
/// last, and only once the new one is written: a refused login (too large) deletes nothing, so a
/// logout landing meanwhile can never be undone by a write-back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_cycle_deletes_the_old_key_last_and_a_refused_one_deletes_nothing() {
    use axum_redis_session::fred::prelude::Config;
    let cluster = Cluster::start();
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
            let at = command.at();
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

/// Issue #14: on a cluster, a logout-everywhere that lands between the steps of a cycle of one of
/// the user's sessions (on another instance) must leave no session of the user. Both sides run the
/// crate's own code, on two apps (two instances) over one cluster of three masters. The race is
/// made deterministic with `CLIENT PAUSE WRITE` on the master A that holds the session S1 being
/// cycled: the cycle reads S1 (reads pass) and writes S2 on another master B, then its `take_if`
/// of S1 waits on A. The logout-everywhere, started then, reads the user's index on a third master
/// C, which does not list S2 yet, and its `DEL` of S1 queues on A behind the `take_if`. Unpaused,
/// A runs the `take_if` first (S1 taken, as the cycle read it), then the logout's `DEL` finds
/// nothing, and last the cycle indexes S2. Without the revocation epoch, S2, a session that existed
/// (as S1) before the logout-everywhere, survived it; with it, `index.lua` refuses S2 (S2 carries
/// the epoch that the logout bumped) and the cycle deletes it.
///
/// The same holds for ending S1's device by its handle from another device (issue #21): the
/// ending marks the handle ended in the index before it reads S1's handle, and `index.lua` refuses
/// S2, which carries it. Without the marker S2 survived as that device's session; the asking
/// device's own session stays.
///
/// A run in which S2 lands on A itself (its write then waits behind the pause, and the logout's
/// `DEL` of S1 comes first: no race) is started over with a new user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_logout_everywhere_between_a_cycles_steps_leaves_no_session_of_the_user() {
    race_a_cluster_cycle(Ending::Everywhere).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_device_ended_between_its_cycles_steps_leaves_only_the_asking_session() {
    race_a_cluster_cycle(Ending::ThatDevice).await;
}

/// What the other instance does while a cycle of one of the user's sessions waits between steps.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// `POST /logout-everywhere`.
    Everywhere,
    /// `DELETE /sessions/{handle}` of the cycling session's device.
    ThatDevice,
}

async fn race_a_cluster_cycle(ending: Ending) {
    use axum_redis_session::fred::prelude::Config;
    use std::time::{Duration, Instant};
    let cluster = Cluster::start();
    let instance = || async {
        let config = Config::from_url(&cluster.url()).unwrap();
        let store = support::connected_store(config)
            .await
            .with_command_timeout(time::Duration::seconds(20));
        support::app_on(store, |l| l).await.0
    };
    let (cycling, revoking) = (instance().await, instance().await);
    // Every script cached on every master, so that none of the steps below turns into an EVALSHA
    // refused (NOSCRIPT) and sent again behind the other side's commands.
    for app in [&cycling, &revoking] {
        for i in 0..12 {
            let mut warm = Browser::new(app.clone());
            warm.post_form("/login", &format!("user=warm{i}")).await;
            warm.post_form("/test/cycle", "").await;
            warm.post_form("/test/cycle", "").await;
            warm.post_form("/logout-everywhere", "").await;
        }
    }

    for attempt in 0..12 {
        let user = format!("alice{attempt}");
        let index = format!("session:user:{user}");
        let mut x = Browser::new(cycling.clone());
        let mut y = Browser::new(revoking.clone());
        y.post_form("/login", &format!("user={user}")).await;
        // S1 on a master A other than the index's C.
        let (a, c, s1) = loop {
            let reply = x.post_form("/login", &format!("user={user}")).await;
            assert_eq!(reply.status, StatusCode::NO_CONTENT);
            x.put("/kv/item", "mine").await;
            let s1 = support::session_key("session:", x.cookie.as_deref().unwrap());
            let (a, c) = (cluster.holders(&s1)[0], cluster.holders(&index)[0]);
            if a != c {
                break (a, c, s1);
            }
        };
        let before = sessions_of(&cluster, &user);
        assert_eq!(before.len(), 2, "attempt {attempt}: {before:?}");
        // An earlier attempt's kept session is the only other one.
        let others = cluster_session_keys(&cluster).len() - before.len();
        let y_key = support::session_key("session:", y.cookie.as_deref().unwrap());
        let listed: Vec<serde_json::Value> =
            serde_json::from_str(&y.get("/sessions").await.body).unwrap();
        let x_handle = listed.iter().find(|d| d["current"] == false).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let end = move |mut y: Browser| {
            let path = match ending {
                Ending::Everywhere => "/logout-everywhere".to_owned(),
                Ending::ThatDevice => format!("/sessions/{x_handle}"),
            };
            async move {
                match ending {
                    Ending::Everywhere => y.post_form(&path, "").await,
                    Ending::ThatDevice => y.delete(&path).await,
                }
            }
        };
        let kept = match ending {
            Ending::Everywhere => vec![],
            Ending::ThatDevice => vec![y_key],
        };

        let node_a = cluster.node(a);
        let mut on_a = Monitor::start(node_a).await;
        node_a.cli(&["client", "pause", "30000", "write"]);
        let cycle = tokio::spawn({
            let mut x = x.clone();
            async move {
                let reply = x.post_form("/test/cycle", "").await;
                (reply, x)
            }
        });
        // S2 written, on a master B other than A.
        let started = Instant::now();
        let written = loop {
            if cluster_session_keys(&cluster).len() == others + 3 {
                break true;
            }
            if started.elapsed() > Duration::from_secs(2) {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if !written {
            // S2 is on A: its write waits behind the pause. No race this time.
            eprintln!("attempt {attempt}: the new id is on the paused master; again");
            node_a.cli(&["client", "unpause"]);
            cycle.await.unwrap();
            let ended = end(y.clone()).await;
            assert_eq!(ended.status, StatusCode::NO_CONTENT, "{ended:?}");
            // A cycle that ended before the ending began: its new id is indexed.
            let left = sessions_of(&cluster, &user);
            assert_eq!(left, kept, "only the kept session outlived the ending");
            continue;
        }
        // The take_if of S1 reaches A (and waits there) before the logout's DEL does.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut monitor = Monitor::start(cluster.node(c)).await;
        let logout = tokio::spawn(end(y.clone()));
        // The ending has read the index (its DEL of S1 now waits on A).
        let started = Instant::now();
        while !monitor.take().await.any_line_contains(&index) {
            assert!(started.elapsed() < Duration::from_secs(10), "no logout");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        node_a.cli(&["client", "unpause"]);
        let ((cycled, mut x), logged_out) = (cycle.await.unwrap(), logout.await.unwrap());
        assert_eq!(logged_out.status, StatusCode::NO_CONTENT);
        assert!(cluster.holders(&s1).is_empty(), "S1 is gone");
        // The interleaving was the one above: on A, the cycle's take_if ran before the logout's DEL.
        let on_a = on_a.take().await;
        let position = |what: &dyn Fn(&support::Seen) -> bool| on_a.0.iter().position(what);
        let taken = position(&|c| c.name == "evalsha" && c.line.contains("\"take_if\""));
        let deleted = position(&|c| !c.from_script && c.name == "del" && c.line.contains(&s1));
        assert!(
            matches!((taken, deleted), (Some(t), Some(d)) if t < d),
            "take_if at {taken:?}, the logout's DEL at {deleted:?}: {on_a:?}"
        );
        assert!(
            cycled.set_cookie().is_none(),
            "the cycle reports the session gone: {cycled:?}"
        );

        let left = sessions_of(&cluster, &user);
        assert_eq!(
            left, kept,
            "a session of {user} outlived the ending (cycle: {cycled:?})"
        );
        assert_eq!(x.get("/me").await.status, StatusCode::UNAUTHORIZED);
        return;
    }
    panic!("the new id landed on the paused master every time");
}

/// A user who logged out everywhere on a cluster logs in again: the new session records the user's
/// new revocation epoch, so a later cycle of its id is admitted instead of refused as revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_after_a_cluster_logout_everywhere_records_the_epoch_and_can_cycle() {
    use axum_redis_session::fred::prelude::Config;
    let cluster = Cluster::start();
    let config = Config::from_url(&cluster.url()).unwrap();
    let app = support::app_on(support::connected_store(config).await, |l| l)
        .await
        .0;
    let mut first = Browser::new(app.clone());
    first.post_form("/login", "user=bob").await;
    assert_eq!(
        first.post_form("/logout-everywhere", "").await.status,
        StatusCode::NO_CONTENT
    );

    let mut again = Browser::new(app.clone());
    assert_eq!(
        again.post_form("/login", "user=bob").await.status,
        StatusCode::NO_CONTENT
    );
    let key = support::session_key("session:", again.cookie.as_deref().unwrap());
    let node = cluster.node(*cluster.holders(&key).first().expect("the new session"));
    let epoch: i64 = node.cli(&["hget", &key, "$epoch"]).trim().parse().unwrap();
    assert!(epoch > 0, "the login recorded the epoch: {epoch}");

    assert_eq!(
        again.post_form("/test/cycle", "").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(again.get("/me").await.body, "bob", "the cycle was admitted");
    assert_eq!(sessions_of(&cluster, "bob").len(), 1);
}

/// A plain write (the common write, `fast_update.lua`) that lands after a logout recreates no
/// session: the late request is refused, and Redis holds nothing under the old key.
#[tokio::test]
async fn a_plain_write_after_a_logout_is_refused_and_leaves_no_key_behind() {
    let server = RedisServer::start();
    let (app, gate) = support::app_on(support::store_on(&server).await, |l| l).await;
    let redis = server.probe().await;
    let mut browser = Browser::new(app.clone());
    browser.get("/counter").await;
    let key = session_key("session:", browser.cookie.as_deref().unwrap());
    let mut slow = browser.clone();
    let pending = tokio::spawn(async move { slow.get("/test/slow-counter").await });
    gate.wait_arrival().await;
    let mut monitor = Monitor::start(&server).await;
    assert_eq!(
        browser.post_form("/logout", "").await.status,
        StatusCode::NO_CONTENT
    );
    gate.release();
    assert_eq!(pending.await.unwrap().status, StatusCode::CONFLICT);
    let received = monitor.take().await;
    assert_eq!(
        received.script_calls("fast_update"),
        1,
        "the late write was the plain one: {received:?}"
    );
    let exists: i64 = redis.exists(&key).await.unwrap();
    assert_eq!(exists, 0, "nothing left under the logged-out key");
}

/// A login whose id cycle starts from a session logged out meanwhile finds it gone: the login starts a
/// fresh session, the logged-out data stays gone, and Redis holds no hash that is no session.
#[tokio::test]
async fn a_login_racing_a_logout_starts_afresh_and_leaves_no_half_session() {
    let server = RedisServer::start();
    let (app, gate) = support::app_on(support::store_on(&server).await, |l| l).await;
    let redis = server.probe().await;
    let mut browser = Browser::new(app.clone());
    browser.get("/counter").await;
    let mut slow = browser.clone();
    let pending = tokio::spawn(async move {
        let reply = slow.post_form("/test/slow-login", "user=alice").await;
        (reply.status, slow)
    });
    gate.wait_arrival().await;
    assert_eq!(
        browser.post_form("/logout", "").await.status,
        StatusCode::NO_CONTENT
    );
    gate.release();
    let (status, mut logged_in) = pending.await.unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(logged_in.get("/me").await.body, "alice");
    assert_eq!(
        logged_in.get("/counter/peek").await.body,
        "0",
        "the logged-out data is not brought back"
    );
    for key in support::session_keys(&server) {
        let created: bool = redis.hexists(&key, "$created").await.unwrap();
        assert!(created, "{key} is a hash that is no session");
    }
}

/// Writes racing on one session near its size limit each check against the size they read, so
/// together they can pass the limit, by at most what each may add on the plain path (1/64 of the
/// limit); the stored size stays exact, and the next write that grows the session is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_plain_writes_pass_the_size_limit_by_at_most_their_bound() {
    use axum::routing::{get, put};
    use axum_redis_session::{Session, SessionLayer};

    const MAX: usize = 4096;
    const WRITERS: usize = 8;
    let server = RedisServer::start();
    let store = support::store_on(&server).await;
    let everyone_read = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
    let app = axum::Router::new()
        .route(
            "/fill",
            put(|session: Session, body: String| async move { session.insert("fill", body) }),
        )
        .route(
            "/add/{field}",
            get(
                move |session: Session, axum::extract::Path(field): axum::extract::Path<String>| {
                    let everyone_read = everyone_read.clone();
                    async move {
                        session.get::<String>("fill").await?;
                        everyone_read.wait().await;
                        session.insert(&field, "x".repeat(50))
                    }
                },
            ),
        )
        .route(
            "/grow",
            get(|session: Session| async move {
                session.get::<String>("fill").await?;
                session.insert("grown", "y")
            }),
        )
        .layer(
            SessionLayer::new(store)
                .with_max_bytes(MAX)
                .with_secure(false),
        );
    let mut browser = Browser::new(app);
    // "fill" and its JSON string: 4 + 2 + n bytes, leaving room for one more field of 57.
    let fill = "f".repeat(MAX - 6 - 60);
    assert_eq!(browser.put("/fill", &fill).await.status, StatusCode::OK);
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let mut b = browser.clone();
            tokio::spawn(async move { b.get(&format!("/add/w{i}")).await.status })
        })
        .collect();
    for writer in writers {
        assert_eq!(writer.await.unwrap(), StatusCode::OK);
    }

    let key = session_key("session:", browser.cookie.as_deref().unwrap());
    let hash: HashMap<String, String> = server.probe().await.hgetall(&key).await.unwrap();
    let true_size: usize = hash
        .iter()
        .filter(|(field, _)| !field.starts_with('$'))
        .map(|(field, value)| field.len() + value.len())
        .sum();
    let stored: usize = hash["$size"].parse().unwrap();
    println!("size limit {MAX}: {true_size} bytes after {WRITERS} racing writes");
    assert_eq!(stored, true_size, "the stored size is exact");
    assert!(true_size > MAX, "the race did pass the limit: {true_size}");
    assert!(
        true_size <= MAX + (WRITERS - 1) * (MAX / 64),
        "{true_size} bytes: past the bound"
    );
    assert_eq!(
        browser.get("/grow").await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

/// Lockers and plain writers racing on one session: the critical sections run one at a time (each
/// value once, one lock taken per section), the plain writes are neither held up nor lost, and the
/// lock is free once they are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_lockers_serialise_while_plain_writes_go_through() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app);
    browser.put("/kv/start", "1").await;
    let lockers: Vec<_> = (0..16)
        .map(|_| {
            let mut b = browser.clone();
            tokio::spawn(async move { b.post_form("/critical?hold_ms=10", "").await })
        })
        .collect();
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let mut b = browser.clone();
            tokio::spawn(async move { b.put(&format!("/kv/w{i}"), &i.to_string()).await.status })
        })
        .collect();
    for writer in writers {
        assert_eq!(writer.await.unwrap(), StatusCode::NO_CONTENT);
    }
    let mut values: Vec<u64> = Vec::new();
    for locker in lockers {
        let reply = locker.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        values.push(reply.body.parse().unwrap());
    }
    values.sort_unstable();
    assert_eq!(values, (1..=16).collect::<Vec<_>>());
    for i in 0..16 {
        assert_eq!(browser.get(&format!("/kv/w{i}")).await.body, i.to_string());
    }
    let key = session_key("session:", browser.cookie.as_deref().unwrap());
    let redis = server.probe().await;
    let (lock, fence): (Option<String>, Option<String>) =
        redis.hmget(&key, vec!["$lock", "$fence"]).await.unwrap();
    assert_eq!(
        (lock, fence.as_deref()),
        (None, Some("16")),
        "free, after 16 locks"
    );
}

/// A lock taken over while its holder still runs (as after the holder's lock expired): the old
/// holder's save is refused with 409 and writes nothing, and its release leaves the new holder's
/// lock in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_lock_was_taken_over_writes_nothing_and_frees_nothing() {
    let server = RedisServer::start();
    let (app, gate) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app);
    browser.put("/kv/critical", "5").await;
    let key = session_key("session:", browser.cookie.as_deref().unwrap());
    let mut holder = browser.clone();
    let held = tokio::spawn(async move { holder.post_form("/test/lock-gate", "").await });
    gate.wait_arrival().await;
    let redis = server.probe().await;
    let (lock, fence): (String, String) = redis.hmget(&key, vec!["$lock", "$fence"]).await.unwrap();
    assert!(lock.starts_with("1:"), "{lock}");
    assert_eq!(fence, "1");
    // Another holder's lock, as `lock.lua` writes it when it takes an expired one.
    let theirs = format!("2:{}", support::unix_ms() + 60_000);
    let _: () = redis
        .hset(&key, vec![("$lock", theirs.as_str()), ("$fence", "2")])
        .await
        .unwrap();
    gate.release();
    let late = held.await.unwrap();
    assert_eq!(
        (late.status, late.body.as_str()),
        (StatusCode::CONFLICT, "session lock lost")
    );
    assert_eq!(
        browser.get("/kv/critical").await.body,
        "5",
        "nothing of it saved"
    );
    let lock: String = redis.hget(&key, "$lock").await.unwrap();
    assert_eq!(lock, theirs, "the other holder's lock is left alone");
}

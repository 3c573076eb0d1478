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

/// The master of `cluster` that holds `key`.
fn holder(cluster: &support::Cluster, key: &str) -> Option<u16> {
    cluster
        .masters()
        .into_iter()
        .find(|&port| cluster.node(port).cli(&["exists", key]).trim() == "1")
}

/// Session keys (not indexes) on every master of `cluster`, bound to `user`.
fn sessions_of(cluster: &support::Cluster, user: &str) -> Vec<String> {
    let mut found = Vec::new();
    for port in cluster.masters() {
        let node = cluster.node(port);
        for key in node.cli(&["--scan", "--pattern", "session:*"]).lines() {
            if key.is_empty() || key.starts_with("session:user:") {
                continue;
            }
            if node.cli(&["hget", key, "$user"]).trim() == user {
                found.push(key.to_owned());
            }
        }
    }
    found
}

/// Every session key on every master of `cluster`.
fn session_keys(cluster: &support::Cluster) -> Vec<String> {
    cluster
        .masters()
        .into_iter()
        .flat_map(|port| {
            let keys = cluster
                .node(port)
                .cli(&["--scan", "--pattern", "session:*"]);
            keys.lines()
                .filter(|k| !k.is_empty() && !k.starts_with("session:user:"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
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
/// A run in which S2 lands on A itself (its write then waits behind the pause, and the logout's
/// `DEL` of S1 comes first: no race) is started over with a new user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_logout_everywhere_between_a_cycles_steps_leaves_no_session_of_the_user() {
    use axum_redis_session::fred::prelude::Config;
    use std::time::{Duration, Instant};
    let cluster = support::Cluster::start();
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
            let (a, c) = (
                holder(&cluster, &s1).unwrap(),
                holder(&cluster, &index).unwrap(),
            );
            if a != c {
                break (a, c, s1);
            }
        };
        let before = session_keys(&cluster);
        assert_eq!(before.len(), 2, "attempt {attempt}: {before:?}");

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
            if session_keys(&cluster).len() == 3 {
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
            y.post_form("/logout-everywhere", "").await;
            // A cycle that ended before the logout-everywhere began: its new id is indexed.
            let left = sessions_of(&cluster, &user);
            assert!(left.is_empty(), "{left:?} outlived a logout-everywhere");
            continue;
        }
        // The take_if of S1 reaches A (and waits there) before the logout's DEL does.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut monitor = Monitor::start(cluster.node(c)).await;
        let logout = tokio::spawn({
            let mut y = y.clone();
            async move { y.post_form("/logout-everywhere", "").await }
        });
        // The logout has read the index (its DEL of S1 now waits on A).
        let started = Instant::now();
        while !monitor.take().await.any_line_contains(&index) {
            assert!(started.elapsed() < Duration::from_secs(10), "no logout");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        node_a.cli(&["client", "unpause"]);
        let ((cycled, mut x), logged_out) = (cycle.await.unwrap(), logout.await.unwrap());
        assert_eq!(logged_out.status, StatusCode::NO_CONTENT);
        assert!(holder(&cluster, &s1).is_none(), "S1 is gone");
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
        assert!(
            left.is_empty(),
            "a session of {user} outlived the logout-everywhere: {left:?} (cycle: {cycled:?})"
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
    let cluster = support::Cluster::start();
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
    let node = cluster.node(holder(&cluster, &key).expect("the new session"));
    let epoch: i64 = node.cli(&["hget", &key, "$epoch"]).trim().parse().unwrap();
    assert!(epoch > 0, "the login recorded the epoch: {epoch}");

    assert_eq!(
        again.post_form("/test/cycle", "").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(again.get("/me").await.body, "bob", "the cycle was admitted");
    assert_eq!(sessions_of(&cluster, "bob").len(), 1);
}

//! The near-cache on real Redis, with two application instances (A and B, each its own store with
//! its own cache, as two pods would have): every way a session can change elsewhere is seen on A,
//! on one server, a cluster and Sentinel; a frozen, killed or flushed Redis, a killed connection and
//! a full tracking table never make A serve an old value. A hot read sends nothing to any master of
//! a cluster or to the Sentinel master, counted here with `MONITOR` (on one server, in
//! `round_trips.rs`).

mod support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum_redis_session::fred::prelude::*;
use support::{
    monitor_args, session_key, wait_for, Browser, Cluster, Instance, Monitor, RedisServer,
    SentinelGroup,
};

/// How long an invalidation may take to reach the other instance (measured: well under 1 ms on
/// loopback; the bound leaves room for a loaded CI machine).
const SEEN_WITHIN: Duration = Duration::from_millis(100);
const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);

/// Reads `path` on `browser` until its body is `expected`; every other answer is a stale read.
/// Returns how long that took, and fails past `limit`.
async fn seen(browser: &mut Browser, path: &str, expected: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let reply = browser.get(path).await;
        if reply.body == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{path} still answers {:?} ({}) after {limit:?}, expected {expected:?}",
            reply.body,
            reply.status
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn two_instances(server: &RedisServer) -> (Instance, Instance) {
    (
        Instance::start(&server.url(), |l| l).await,
        Instance::start(&server.url(), |l| l).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_b_and_by_any_client_are_seen_on_a() {
    let server = RedisServer::start();
    let (a, b) = two_instances(&server).await;
    let mut on_a = a.browser(None);
    on_a.get("/counter").await;
    let cookie = on_a.cookie.clone();
    let mut on_b = b.browser(cookie.clone());
    let key = session_key("session:", cookie.as_deref().unwrap());
    let probe = server.probe().await;

    let mut worst = Duration::ZERO;
    for round in 0..50_u64 {
        a.warm(&mut on_a, "/counter/peek").await;
        // A write through instance B, then one by a plain Redis client.
        let expected = (2 * round + 2).to_string();
        assert_eq!(on_b.get("/counter").await.body, expected);
        worst = worst.max(seen(&mut on_a, "/counter/peek", &expected, SEEN_WITHIN).await);
        a.warm(&mut on_a, "/counter/peek").await;
        let expected = (2 * round + 3).to_string();
        let _: () = probe
            .hset(&key, ("count", expected.as_str()))
            .await
            .unwrap();
        worst = worst.max(seen(&mut on_a, "/counter/peek", &expected, SEEN_WITHIN).await);
    }
    println!("near-cache: 100 writes elsewhere, each seen on A within {worst:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_and_a_logout_everywhere_on_b_are_seen_on_a() {
    let server = RedisServer::start();
    let (a, b) = two_instances(&server).await;
    let mut on_a = a.browser(None);
    on_a.post_form("/login", "user=alice").await;
    assert_eq!(a.warm(&mut on_a, "/me").await, "alice");
    let mut on_b = b.browser(on_a.cookie.clone());
    assert_eq!(
        on_b.post_form("/logout", "").await.status,
        StatusCode::NO_CONTENT
    );
    seen(&mut on_a, "/me", "", SEEN_WITHIN).await;

    // Alice again, on two browsers: the one hot on A is ended by a logout-everywhere on B.
    let mut first = a.browser(None);
    first.post_form("/login", "user=alice").await;
    assert_eq!(a.warm(&mut first, "/me").await, "alice");
    let mut second = b.browser(None);
    second.post_form("/login", "user=alice").await;
    assert_eq!(
        second.post_form("/logout-everywhere", "").await.status,
        StatusCode::NO_CONTENT
    );
    seen(&mut first, "/me", "", SEEN_WITHIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_disjoint_writers_across_two_cached_instances_keep_every_key() {
    let server = RedisServer::start();
    let (a, b) = two_instances(&server).await;
    let mut first = a.browser(None);
    first.put("/kv/start", "1").await;
    let cookie = first.cookie.clone();
    let writers = [(&a, "a"), (&b, "b"), (&a, "c"), (&b, "d")].map(|(instance, name)| {
        let mut browser = instance.browser(cookie.clone());
        tokio::spawn(async move {
            for i in 0..25 {
                let reply = browser.put(&format!("/kv/{name}{i}"), &i.to_string()).await;
                assert_eq!(reply.status, StatusCode::NO_CONTENT);
                // A read between writes keeps the session hot on this instance.
                browser.get(&format!("/kv/{name}{i}")).await;
            }
        })
    });
    for writer in writers {
        writer.await.unwrap();
    }
    for (instance, name) in [(&a, "a"), (&b, "b"), (&a, "c"), (&b, "d")] {
        let mut browser = instance.browser(cookie.clone());
        for i in 0..25 {
            let reply = browser.get(&format!("/kv/{name}{i}")).await;
            assert_eq!(
                (reply.status, reply.body),
                (StatusCode::OK, i.to_string()),
                "{name}{i}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_client_kill_a_never_serves_the_old_value() {
    let server = RedisServer::start();
    let a = Instance::start(&server.url(), |l| l).await;
    let mut on_a = a.browser(None);
    on_a.get("/counter").await;
    let key = session_key("session:", on_a.cookie.as_deref().unwrap());
    let probe = server.probe().await;
    for round in 0..5 {
        a.warm(&mut on_a, "/counter/peek").await;
        // Every connection but the probe's: A's data connections and its listener.
        support::kill_other_clients(&probe).await;
        let expected = (100 + round).to_string();
        let _: () = probe
            .hset(&key, ("count", expected.as_str()))
            .await
            .unwrap();
        // Until A is back it may answer 503, never the old value.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let reply = on_a.get("/counter/peek").await;
            if reply.status == StatusCode::OK {
                assert_eq!(reply.body, expected, "a stale read after CLIENT KILL");
                break;
            }
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(Instant::now() < deadline, "A never recovered");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_empties_the_cache() {
    let server = RedisServer::start();
    let a = Instance::start(&server.url(), |l| l).await;
    let mut on_a = a.browser(None);
    on_a.get("/counter").await;
    assert_eq!(a.warm(&mut on_a, "/counter/peek").await, "1");
    server.cli(&["flushall"]);
    // The session is gone from Redis, so from A too (once Redis's announcement has arrived, as for
    // any write): a fresh count, and never the old one again.
    seen(&mut on_a, "/counter/peek", "0", SEEN_WITHIN).await;
    for _ in 0..20 {
        assert_eq!(on_a.get("/counter/peek").await.body, "0");
    }
    // And the cache goes on serving what is read afterwards.
    on_a.get("/counter").await;
    assert_eq!(a.warm(&mut on_a, "/counter/peek").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_or_killed_redis_gives_503_within_the_lease_and_service_resumes() {
    let mut server = RedisServer::start();
    let a = Instance::start(&server.url(), |l| l).await;
    let mut on_a = a.browser(None);
    on_a.get("/counter").await;
    a.warm(&mut on_a, "/counter/peek").await;

    server.signal("STOP");
    let frozen = Instant::now();
    // Hits may go on for at most the lease (1 s); then reads go to Redis and time out.
    let bound = Duration::from_secs(1) + COMMAND_TIMEOUT + Duration::from_millis(500);
    let failed_after = loop {
        let reply = on_a.get("/counter/peek").await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            break frozen.elapsed();
        }
        assert_eq!(reply.body, "1");
        assert!(
            frozen.elapsed() < bound,
            "still served {:?} after a freeze",
            frozen.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(failed_after < bound, "503 after {failed_after:?}");
    server.signal("CONT");
    let (reply, _) = on_a
        .get_until_ok("/counter/peek", Duration::from_secs(5))
        .await;
    assert_eq!(reply.body, "1");

    // Killed outright: the same, and a restarted Redis (empty) serves again.
    a.warm(&mut on_a, "/counter/peek").await;
    server.stop();
    let killed = Instant::now();
    loop {
        let reply = on_a.get("/counter/peek").await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(killed.elapsed() < bound, "still served after Redis died");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.restart();
    let (reply, _) = on_a
        .get_until_ok("/counter/peek", Duration::from_secs(10))
        .await;
    assert_eq!(reply.body, "0", "the restarted Redis holds no session");
}

/// The near-cache's gauges, from `/metrics`: entries, bytes, pending fills, serving.
async fn gauges(browser: &mut Browser) -> [u64; 4] {
    let text = browser.get("/metrics").await.body;
    ["entries", "bytes", "pending_fills", "serving"].map(|gauge| {
        let name = format!("session_near_cache_{gauge} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&name))
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
            .parse()
            .unwrap()
    })
}

/// `/metrics` tells what the near-cache holds and whether it serves; reads whose request is dropped
/// while Redis has not answered (a client that hung up) leave no pending fill behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gauges_tell_the_cache_and_dropped_reads_leave_no_pending_fill() {
    const COLD: usize = 10;
    let server = RedisServer::start();
    let a = Instance::start(&server.url(), |l| l).await;
    a.ready(Duration::from_secs(10)).await;
    let mut hot = a.browser(None);
    hot.get("/counter").await;
    a.warm(&mut hot, "/counter/peek").await;
    let mut cold = Vec::new();
    for _ in 0..COLD {
        let mut browser = a.browser(None);
        browser.get("/counter").await;
        cold.push(browser);
    }
    let mut metrics = a.browser(None);
    // One small session, counted at the 1 KiB an entry counts at least.
    assert_eq!(gauges(&mut metrics).await, [1, 1024, 0, 1]);

    server.signal("STOP");
    let mut dropped = 0;
    for browser in &mut cold {
        let read = tokio::time::timeout(Duration::from_millis(50), browser.get("/counter/peek"));
        dropped += usize::from(read.await.is_err());
    }
    let [_, _, pending, _] = gauges(&mut metrics).await;
    server.signal("CONT");
    assert_eq!(
        dropped, COLD,
        "every cold read was waiting on Redis when dropped"
    );
    assert_eq!(pending, 0, "a dropped read takes its fill back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_reads_keep_a_session_alive_and_an_idle_one_is_never_served_after_its_timeout() {
    let server = RedisServer::start();
    let idle = time::Duration::seconds(2);
    let a = Instance::start(&server.url(), |l| l.with_idle_timeout(idle)).await;
    let mut on_a = a.browser(None);
    on_a.get("/counter").await;
    // Reads for twice the idle timeout: the session stays alive.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        assert_eq!(on_a.get("/counter/peek").await.body, "1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(a.hits() > 0, "some of those reads were served by the cache");
    // Then idle past its timeout: gone, even though A held it.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(on_a.get("/counter/peek").await.body, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_tracking_table_pauses_the_cache_and_causes_no_stale_read() {
    let server = RedisServer::start();
    let (a, b) = two_instances(&server).await;
    let mut sessions = Vec::new();
    for _ in 0..10 {
        let mut on_a = a.browser(None);
        on_a.get("/counter").await;
        a.warm(&mut on_a, "/counter/peek").await;
        let on_b = b.browser(on_a.cookie.clone());
        sessions.push((on_a, on_b));
    }
    // Past this Redis evicts tracked keys, and may stop tracking ours silently: the cache stops
    // serving at the next heartbeat (a quarter of a second), while every read stays right.
    server.cli(&["config", "set", "tracking-table-max-keys", "2"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let hits = a.hits();
    for round in 2..5 {
        for (on_a, on_b) in &mut sessions {
            on_a.get("/counter/peek").await;
            assert_eq!(on_b.get("/counter").await.body, round.to_string());
            seen(on_a, "/counter/peek", &round.to_string(), SEEN_WITHIN).await;
        }
    }
    assert_eq!(a.hits(), hits, "nothing served while the table is full");
    // Room again: the cache serves again.
    server.cli(&["config", "set", "tracking-table-max-keys", "0"]);
    let (on_a, _) = &mut sessions[0];
    assert_eq!(a.warm(on_a, "/counter/peek").await, "4");
}

/// Alice logged in on A and read there for half a second (two heartbeats), then logged out on B:
/// A's next read must not be Alice's. Returns A's hits.
async fn logout_on_b_holds_on_a(a: &Instance, b: &Instance) -> u64 {
    let mut on_a = a.browser(None);
    on_a.post_form("/login", "user=alice").await;
    for _ in 0..20 {
        assert_eq!(on_a.get("/me").await.body, "alice");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut on_b = b.browser(on_a.cookie.clone());
    assert_eq!(
        on_b.post_form("/logout", "").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(on_a.get("/me").await.body, "", "A honours B's logout");
    a.hits()
}

/// A listener that may not subscribe to the invalidation channel (a least-privilege ACL user, as
/// Redis 7 makes new users by default) never hears an invalidation: the cache must not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_denied_the_invalidation_channel_never_serves() {
    let server = RedisServer::start();
    server.cli(&[
        "acl",
        "setuser",
        "app",
        "on",
        ">secret",
        "~*",
        "+@all",
        "resetchannels",
    ]);
    let url = format!("redis://app:secret@127.0.0.1:{}", server.port);
    let a = Instance::start(&url, |l| l).await;
    let b = Instance::start(&server.url(), |l| l).await;
    assert_eq!(
        logout_on_b_holds_on_a(&a, &b).await,
        0,
        "no hit without proof"
    );
    assert_eq!(gauges(&mut a.browser(None)).await[3], 0, "not serving");
}

/// The id that the next connection to `server` gets, give or take those made meanwhile.
fn next_client_id(server: &RedisServer) -> u64 {
    server.cli(&["client", "id"]).trim().parse::<u64>().unwrap() + 1
}

/// A listener that a connection by address put on another server (a DNS name, load balancer or
/// virtual IP that changed its answer), while on the data connection's server a stranger holds the
/// listener's client id: `CLIENT TRACKING ... REDIRECT` and `CLIENT GETREDIR` both accept it, and
/// the invalidations go to the stranger. The cache must not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_another_server_never_serves_even_when_a_stranger_has_its_id() {
    let (x, y) = (RedisServer::start(), RedisServer::start());
    let first_stranger = next_client_id(&x);
    let mut strangers = Vec::new();
    for _ in 0..200 {
        strangers.push(
            tokio::net::TcpStream::connect(("127.0.0.1", x.port))
                .await
                .unwrap(),
        );
    }
    while next_client_id(&y) < first_stranger + 50 {}
    // A's data connections (the pool of two that `connect` makes) reach X; its listeners, made
    // at its first read, Y.
    let route = support::SplitRoute::start(x.port).await;
    let a = Instance::start(&route.url(), |l| l).await;
    let talking = || {
        x.cli(&["client", "list"])
            .lines()
            .filter(|l| !l.contains("cmd=NULL"))
            .count()
    };
    wait_for("A's two connections", Duration::from_secs(5), || {
        talking() == 3
    });
    route.reroute(y.port);
    let b = Instance::start(&x.url(), |l| l).await;
    let hits = logout_on_b_holds_on_a(&a, &b).await;
    // As described: A's data connections redirect to ids that strangers on X hold.
    let clients = x.cli(&["client", "list"]);
    let redirects: Vec<&str> = clients
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix("redir="))
        })
        .filter(|id| *id != "-1")
        .collect();
    assert_eq!(redirects.len(), 2, "A's two data connections redirect");
    for id in redirects {
        let holder = format!("id={id} ");
        assert!(
            clients.lines().any(|line| line.starts_with(&holder)),
            "a client on X has the id {id}"
        );
    }
    assert_eq!(hits, 0, "no hit without proof");
    drop(strangers);
}

/// Reads of sessions that do not exist (well-formed random cookies, no login needed) leave nothing
/// in Redis's tracking table, so however many there are they cannot stop the cache serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_cookies_fill_no_tracking_table_and_never_pause_the_cache() {
    let server = RedisServer::start();
    server.cli(&["config", "set", "tracking-table-max-keys", "101000"]);
    let a = Instance::start(&server.url(), |l| l).await;
    let mut hot = a.browser(None);
    hot.get("/counter").await;
    a.warm(&mut hot, "/counter/peek").await;
    for n in 0..2000 {
        let reply = a
            .browser(Some(support::unissued_token(n)))
            .get("/counter/peek")
            .await;
        assert_eq!(reply.body, "0");
    }
    let stats = server.cli(&["info", "stats"]);
    let tracked: u64 = stats
        .lines()
        .find_map(|l| l.trim().strip_prefix("tracking_total_keys:"))
        .unwrap()
        .parse()
        .unwrap();
    // The hot session and the canary.
    assert!(tracked <= 2, "{tracked} keys in Redis's tracking table");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = a.hits();
    assert_eq!(hot.get("/counter/peek").await.body, "1");
    assert_eq!(
        a.hits(),
        before + 1,
        "the hot session is still served from the cache"
    );
    assert_eq!(gauges(&mut a.browser(None)).await[3], 1, "serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_b_is_seen_on_a_on_a_cluster() {
    let cluster = Cluster::start();
    let a = Instance::start(&cluster.url(), |l| l).await;
    let b = Instance::start(&cluster.url(), |l| l).await;
    // A fresh instance answers once its connections to the cluster are up.
    for instance in [&a, &b] {
        instance
            .browser(None)
            .get_until_ok("/counter", Duration::from_secs(15))
            .await;
    }
    // Sessions on every master.
    for _ in 0..6 {
        let mut on_a = a.browser(None);
        assert_eq!(on_a.get("/counter").await.body, "1");
        a.warm(&mut on_a, "/counter/peek").await;
        let mut on_b = b.browser(on_a.cookie.clone());
        assert_eq!(on_b.get("/counter").await.body, "2");
        seen(&mut on_a, "/counter/peek", "2", SEEN_WITHIN).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sentinel_writes_elsewhere_are_seen_and_a_failover_never_leaves_a_stale_entry() {
    let mut group = SentinelGroup::start();
    let a = Instance::start(&group.url(), |l| l).await;
    let b = Instance::start(&group.url(), |l| l).await;
    let mut on_a = a.browser(None);
    on_a.get_until_ok("/counter", Duration::from_secs(15)).await;
    a.warm(&mut on_a, "/counter/peek").await;
    let mut on_b = b.browser(on_a.cookie.clone());
    assert_eq!(on_b.get("/counter").await.body, "2");
    seen(&mut on_a, "/counter/peek", "2", SEEN_WITHIN).await;

    // Hot on A, replicated, then the master dies and the replica takes over.
    a.warm(&mut on_a, "/counter/peek").await;
    group.master.cli(&["wait", "1", "2000"]);
    group.master.stop();
    let promoted = group.replica.port;
    support::wait_for("the replica's promotion", Duration::from_secs(30), || {
        group.current_master() == Some(promoted)
    });
    let key = session_key("session:", on_a.cookie.as_deref().unwrap());
    group.replica.cli(&["hset", &key, "count", "77"]);
    // A may answer 503 while it reconnects; once it answers, never the value from before.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = on_a.get("/counter/peek").await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.body, "77", "a stale read after the failover");
            break;
        }
        assert!(Instant::now() < deadline, "A never recovered: {reply:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.warm(&mut on_a, "/counter/peek").await;
    group.replica.cli(&["hset", &key, "count", "78"]);
    seen(&mut on_a, "/counter/peek", "78", SEEN_WITHIN).await;
}

/// Reads of one hot session counted on the masters.
const HOT_READS: u64 = 12;

/// Whether a command is one of the near-cache's heartbeats, a quarter of a second apart: on every
/// data connection `CLIENT GETREDIR`, `CLIENT LIST ID <listener>`, a `GET` of the canary and
/// `INFO stats` (and `CONFIG GET`, an admin command, which `MONITOR` never shows); from the prober,
/// a `SET` of the canary. None of it reads a session.
fn is_heartbeat(args: &[String]) -> bool {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["CLIENT", "GETREDIR"] | ["INFO", "stats"] | ["CLIENT", "LIST", "ID", _] => true,
        ["GET", key] | ["SET", key, "1", "PX", "10000"] => key.contains("near-cache-canary:"),
        _ => false,
    }
}

/// `session_near_cache_hits_total` in the demo's `GET /metrics`.
async fn hits_in_metrics(instance: &Instance) -> u64 {
    let body = instance.browser(None).get("/metrics").await.body;
    body.lines()
        .find_map(|line| line.strip_prefix("session_near_cache_hits_total "))
        .expect("/metrics has the near-cache's hit counter")
        .parse()
        .unwrap()
}

/// For each master, the commands it received since the previous call that concern sessions (an
/// `HGETALL`, or any command naming `key`), and how many others it received: heartbeats only.
async fn session_commands(
    monitors: &mut [(u16, Monitor)],
    key: &str,
) -> Vec<(u16, Vec<String>, usize)> {
    let mut per_master = Vec::new();
    for (port, monitor) in monitors.iter_mut() {
        let received = monitor.take().await;
        let (session, others): (Vec<_>, Vec<_>) = received
            .0
            .iter()
            .partition(|c| c.name == "hgetall" || c.args().iter().any(|arg| arg == key));
        for other in &others {
            assert!(
                is_heartbeat(&other.args()),
                "master {port} received {:?}, neither a session command nor a heartbeat",
                other.line
            );
        }
        let session = session.iter().map(|c| c.line.trim().to_owned()).collect();
        per_master.push((*port, session, others.len()));
    }
    per_master
}

/// A session created on `a`, read once (to Redis, which fills the cache), then [`HOT_READS`] times
/// with `MONITOR` on every master: each read answers its count, none reaches a master, and the hit
/// counter of `/metrics` rises by exactly as many. Returns the session's key and the port of the
/// master that served the first read.
async fn hot_reads_send_nothing(a: &Instance, masters: &[&RedisServer]) -> (String, u16) {
    // Ready as a readiness probe sees it: connections up, scripts loaded, tracking on.
    let ready_after = a.ready(Duration::from_secs(15)).await;
    let mut browser = a.browser(None);
    assert_eq!(browser.get("/counter").await.body, "1");
    let key = session_key("session:", browser.cookie.as_deref().unwrap());
    let mut monitors = Vec::new();
    for master in masters {
        monitors.push((master.port, Monitor::start(master).await));
    }

    let before_fill = hits_in_metrics(a).await;
    assert_eq!(browser.get("/counter/peek").await.body, "1");
    let fill = session_commands(&mut monitors, &key).await;
    let owners: Vec<u16> = fill
        .iter()
        .filter(|(_, session, _)| !session.is_empty())
        .map(|(port, _, _)| *port)
        .collect();
    // `tracked_read.lua`: a look at whether the key exists, which Redis does not track, then its
    // `HGETALL`.
    let commands: Vec<String> = fill
        .iter()
        .flat_map(|(_, session, _)| session)
        .map(|line| monitor_args(line)[0].to_lowercase())
        .collect();
    let owner = match owners.as_slice() {
        [owner] if commands == ["evalsha", "renamenx", "hgetall"] => *owner,
        _ => panic!("the first read is one tracked_read.lua on the master of its key: {fill:?}"),
    };
    let after_fill = hits_in_metrics(a).await;
    assert_eq!(after_fill, before_fill, "the first read is not a hit");

    for read in 0..HOT_READS {
        let reply = browser.get("/counter/peek").await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::OK, "1"),
            "read {read}"
        );
    }
    let hot = session_commands(&mut monitors, &key).await;
    let hits = hits_in_metrics(a).await - after_fill;
    for (port, session, heartbeats) in &hot {
        println!(
            "{HOT_READS} hot reads: master {port} received {} session commands ({heartbeats} heartbeat commands)",
            session.len()
        );
    }
    println!("ready after {ready_after:?}; /metrics: {hits} near-cache hits");
    assert!(
        hot.iter().all(|(_, session, _)| session.is_empty()),
        "hot reads reached a master: {hot:?}"
    );
    assert_eq!(hits, HOT_READS, "every hot read is a near-cache hit");
    (key, owner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_hot_reads_send_nothing_to_any_master() {
    let cluster = Cluster::start();
    let a = Instance::start(&cluster.url(), |l| l).await;
    let masters: Vec<&RedisServer> = cluster
        .masters()
        .into_iter()
        .map(|p| cluster.node(p))
        .collect();
    assert_eq!(masters.len(), 3);
    let (key, served_by) = hot_reads_send_nothing(&a, &masters).await;
    assert_eq!(
        cluster.holders(&key),
        vec![served_by],
        "the master of its slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sentinel_hot_reads_send_nothing_to_the_master() {
    let group = SentinelGroup::start();
    let a = Instance::start(&group.url(), |l| l).await;
    let master = group.current_master().expect("the sentinels name a master");
    assert_eq!(master, group.master.port);
    let (_, served_by) = hot_reads_send_nothing(&a, &[&group.master]).await;
    assert_eq!(served_by, master);
}

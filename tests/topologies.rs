//! Scale-out on real topologies: sessions spread over a cluster's masters, ids cycled across slots,
//! logout-everywhere across masters, failovers survived without restarting the app, and an app
//! that starts before its cluster exists. Recovery times are printed (`--nocapture`).

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use axum_redis_session::fred::prelude::Config;
use axum_redis_session::{RedisStore, SessionLayer};
use support::{connected_store, session_key, wait_for, Browser, Cluster, Gate, SentinelGroup};

async fn app_for(config: Config) -> Router {
    let store = connected_store(config).await;
    let layer = SessionLayer::new(store.with_command_timeout(time::Duration::milliseconds(500)));
    support::app(layer, Gate::default())
}

/// Ports of the cluster masters that hold `key`.
fn holders(cluster: &Cluster, key: &str) -> Vec<u16> {
    cluster
        .masters()
        .into_iter()
        .filter(|&port| cluster.node(port).cli(&["exists", key]).trim() == "1")
        .collect()
}

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
async fn a_thousand_sessions_spread_over_every_master() {
    let cluster = Cluster::start();
    let app = app_for(Config::from_url(&cluster.url()).unwrap()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let mut browser = Browser::new(app.clone());
        tasks.spawn(async move { browser.put("/kv/n", &i.to_string()).await.status });
        if tasks.len() >= 16 {
            assert_eq!(
                tasks.join_next().await.unwrap().unwrap(),
                StatusCode::NO_CONTENT
            );
        }
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::NO_CONTENT);
    }
    let per_master: Vec<usize> = cluster
        .masters()
        .into_iter()
        .map(|port| cluster.node(port).cli(&["dbsize"]).trim().parse().unwrap())
        .collect();
    println!("sessions per master: {per_master:?}");
    assert_eq!(per_master.len(), 3);
    assert_eq!(per_master.iter().sum::<usize>(), 1000);
    assert!(
        per_master.iter().all(|&n| n > 200),
        "uneven spread: {per_master:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_cycle_across_slots_and_logout_everywhere_reaches_every_master() {
    let cluster = Cluster::start();
    let app = app_for(Config::from_url(&cluster.url()).unwrap()).await;
    let mut browsers: Vec<Browser> = (0..8).map(|_| Browser::new(app.clone())).collect();
    let mut moves = Vec::new();
    let mut homes = HashSet::new();
    for (i, browser) in browsers.iter_mut().enumerate() {
        browser.put("/kv/item", &i.to_string()).await;
        let before = session_key("session:", browser.cookie.as_ref().unwrap());
        let from = holders(&cluster, &before);
        assert_eq!(
            browser.post_form("/login", "user=alice").await.status,
            StatusCode::NO_CONTENT
        );
        let after = session_key("session:", browser.cookie.as_ref().unwrap());
        let to = holders(&cluster, &after);
        assert_eq!(
            (from.len(), to.len()),
            (1, 1),
            "each session lives on exactly one master"
        );
        assert!(holders(&cluster, &before).is_empty(), "the old key is gone");
        assert_eq!(
            browser.get("/kv/item").await.body,
            i.to_string(),
            "data moved with the id"
        );
        assert_eq!(browser.get("/me").await.body, "alice");
        moves.push((from[0], to[0]));
        homes.insert(to[0]);
    }
    assert!(
        moves.iter().any(|(from, to)| from != to),
        "some id moved to another master: {moves:?}"
    );
    assert!(
        homes.len() >= 2,
        "alice's sessions live on several masters: {homes:?}"
    );

    assert_eq!(
        browsers[0].post_form("/logout-everywhere", "").await.status,
        StatusCode::NO_CONTENT
    );
    for browser in &mut browsers[1..] {
        assert_eq!(browser.get("/me").await.status, StatusCode::UNAUTHORIZED);
    }
    for port in cluster.masters() {
        assert_eq!(
            cluster.node(port).cli(&["dbsize"]).trim(),
            "0",
            "master {port} still holds keys"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_recovers_without_restarting_the_app() {
    let mut cluster = Cluster::start();
    let app = app_for(Config::from_url(&cluster.url()).unwrap()).await;
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
    let killed = Instant::now();
    let recovered =
        wait_until_all_answer(&mut browsers, "/counter/peek", "1", Duration::from_secs(30)).await;
    println!(
        "cluster failover: every session readable again {recovered:?} after the master was killed"
    );
    assert_eq!(cluster.masters().len(), 3, "a replica took over");
    for browser in &mut browsers {
        assert_eq!(browser.get("/counter").await.body, "2", "writes work again");
    }
    assert!(killed.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_followed_without_restarting_the_app() {
    let mut group = SentinelGroup::start();
    let app = app_for(Config::from_url(&group.url()).unwrap()).await;
    let mut browsers: Vec<Browser> = (0..10).map(|_| Browser::new(app.clone())).collect();
    for browser in &mut browsers {
        browser.get("/counter").await;
    }
    wait_for_replication(&[&group.replica]);
    let old_master = group.master.port;

    group.master.stop();
    let recovered =
        wait_until_all_answer(&mut browsers, "/counter/peek", "1", Duration::from_secs(30)).await;
    println!(
        "sentinel failover: every session readable again {recovered:?} after the master was killed"
    );
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
    let store = RedisStore::connect(&cluster.url()).await.unwrap();
    let layer = SessionLayer::new(store.with_command_timeout(time::Duration::milliseconds(500)));
    let mut browser = Browser::new(support::app(layer, Gate::default()));
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
        wait_until_all_answer(&mut browsers, "/counter", "1", Duration::from_secs(60)).await;
    let _cluster = forming.await.unwrap();
    println!(
        "app started before its cluster: first session saved {served:?} after formation began"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

//! What a session is in Redis, as another program sees it: one hash per session under the SHA-256
//! of its token, the user's index of key ids, a TTL on every key that rolls as the session is used,
//! legacy unhashed ids, what a typical session costs in memory, sessions spread over a cluster's
//! masters and moving between them as ids cycle, no token ever sent to Redis, no CSRF field or
//! secret either (and an old hash's `$csrf` ignored), and the layout
//! guide's "Reading a session from Python" snippet, taken from docs/layout.md as it stands, run under
//! `/usr/bin/python3` (with Debian's `python3-redis`) against a session the demo's routes wrote.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::{Command, Stdio};

use axum::http::StatusCode;
use axum_redis_session::fred::prelude::*;
use axum_redis_session::fred::types::{ClusterHash, CustomCommand};
use support::{session_key, Browser, Cluster, Monitor, RedisServer};

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
    let make_due = || support::leave_a_minute(&redis, &key);

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

/// The secret a CSRF token hides: its last 32 bytes XOR its first 32 (the mask).
fn csrf_secret(token: &str) -> Vec<u8> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .expect("a CSRF token is base64url");
    let (mask, hidden) = bytes.split_at(32);
    mask.iter().zip(hidden).map(|(m, h)| m ^ h).collect()
}

#[tokio::test]
async fn redis_never_holds_a_csrf_field_or_secret() {
    use base64::Engine;
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let redis = server.probe().await;
    let mut monitor = Monitor::start(&server).await;
    let mut browser = Browser::new(app);
    // A token that starts the session, one for a session with data, one after a login.
    let mut tokens = vec![browser.get("/csrf").await.body];
    browser.put("/kv/a", "b").await;
    tokens.push(browser.get("/csrf").await.body);
    browser.post_form("/login", "user=alice").await;
    tokens.push(browser.get("/csrf").await.body);

    let key = session_key("session:", browser.cookie.as_ref().unwrap());
    let hash: HashMap<String, String> = redis.hgetall(&key).await.unwrap();
    assert_eq!(hash["a"], "\"b\"", "the session: {hash:?}");
    assert!(!hash.contains_key("$csrf"), "{hash:?}");
    // Each secret as raw bytes, hex, base64url and base64, and each token as issued.
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for token in &tokens {
        let secret = csrf_secret(token);
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        needles.push(hex.into_bytes());
        for engine in [
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ] {
            needles.push(engine.encode(&secret).into_bytes());
        }
        needles.push(secret);
        needles.push(token.clone().into_bytes());
    }
    for needle in &needles {
        for value in hash.values() {
            assert_ne!(value.as_bytes(), needle, "a field holds a CSRF secret");
            assert!(!value.contains(&*String::from_utf8_lossy(needle)));
        }
    }
    let received = monitor.take().await;
    assert!(received.0.len() > 3, "the scenario reached Redis");
    for needle in &needles {
        let needle = String::from_utf8_lossy(needle);
        assert!(!received.any_line_contains(&needle), "MONITOR saw {needle}");
    }
}

/// `POST /csrf/check` as `browser`, with `token` in `X-CSRF-Token`.
async fn csrf_check(browser: &Browser, token: &str) -> StatusCode {
    let headers = [("x-csrf-token", token)];
    browser
        .post_with_headers("/csrf/check", &headers)
        .await
        .status
}

/// A session written by a version that kept its CSRF token in the hash still loads; its `$csrf`
/// is no CSRF token any more, and stays out of the way.
#[tokio::test]
async fn an_old_hash_with_a_csrf_field_still_loads_and_its_token_is_refused() {
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let redis = server.probe().await;
    let mut browser = Browser::new(app);
    browser.put("/kv/a", "1").await;
    let key = session_key("session:", browser.cookie.as_ref().unwrap());
    let stale = "0123456789abcdef0123456789abcdef";
    let () = redis.hset(&key, ("$csrf", stale)).await.unwrap();

    assert_eq!(browser.get("/kv/a").await.body, "1");
    assert_eq!(csrf_check(&browser, stale).await, StatusCode::FORBIDDEN);
    let token = browser.get("/csrf").await.body;
    assert_eq!(csrf_check(&browser, &token).await, StatusCode::NO_CONTENT);
    browser.put("/kv/b", "2").await;
    assert_eq!(browser.get("/kv/b").await.body, "2");
}

/// The capacity figures of docs/scaling.md: `MEMORY USAGE` of a typical session and of its user's
/// index, asserted within `MEMORY_MARGIN` of the figure the guide prints.
const SESSION_BYTES: u64 = 376;

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
        [
            "$created", "$expires", "$handle", "$seen", "$size", "$user", "$version", "cart",
            "count", "theme"
        ],
        "the session the scaling guide describes"
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
            "{what}: {measured} bytes, docs/scaling.md says {published}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_spread_over_every_master() {
    let cluster = Cluster::start();
    let app = support::app_for(&cluster.url()).await;
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
    // docs/scaling.md: each master holds between 250 and 420 of them (expected 333; 250 is 5.6 standard
    // deviations below, so a fair spread fails this about once in a hundred million runs).
    assert!(
        per_master.iter().all(|&n| (250..=420).contains(&n)),
        "uneven spread: {per_master:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_cycle_across_slots_and_logout_everywhere_reaches_every_master() {
    let cluster = Cluster::start();
    let app = support::app_for(&cluster.url()).await;
    let mut browsers: Vec<Browser> = (0..8).map(|_| Browser::new(app.clone())).collect();
    let mut moves = Vec::new();
    let mut homes = HashSet::new();
    for (i, browser) in browsers.iter_mut().enumerate() {
        browser.put("/kv/item", &i.to_string()).await;
        let before = session_key("session:", browser.cookie.as_ref().unwrap());
        let from = cluster.holders(&before);
        assert_eq!(
            browser.post_form("/login", "user=alice").await.status,
            StatusCode::NO_CONTENT
        );
        let after = session_key("session:", browser.cookie.as_ref().unwrap());
        let to = cluster.holders(&after);
        assert_eq!(
            (from.len(), to.len()),
            (1, 1),
            "each session lives on exactly one master"
        );
        assert!(cluster.holders(&before).is_empty(), "the old key is gone");
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
    // Nothing is left but alice's revocation epoch, which her index keeps (scored +inf).
    for port in cluster.masters() {
        let node = cluster.node(port);
        let keys = node.cli(&["--scan"]);
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        if keys.is_empty() {
            continue;
        }
        assert_eq!(
            keys,
            ["session:user:alice"],
            "master {port} still holds keys"
        );
        let members = node.cli(&["zrange", "session:user:alice", "0", "-1", "withscores"]);
        let members: Vec<&str> = members.lines().collect();
        assert!(
            matches!(members.as_slice(), [epoch, "inf"] if epoch.starts_with("$epoch:")),
            "{members:?}"
        );
    }
}

/// The Python that runs the snippet: a system interpreter, where Debian's `python3-redis` lives (a
/// `python3` earlier on the PATH may be another Python without the module).
const PYTHON: &str = "/usr/bin/python3";

/// The line of docs/layout.md that introduces the snippet; the ```` ```python ```` block after it is run.
const MARKER: &str = "Reading a session from Python:";

/// What the test puts before the snippet: the `request` a web framework would give it, holding the
/// browser's cookie, and `redis.Redis()` pointed at the test's server instead of the default port.
/// Port and token come as arguments: `python3 - PORT TOKEN`.
const HARNESS: &str = r#"import functools, sys, types
import redis
redis.Redis = functools.partial(redis.Redis, host="127.0.0.1", port=int(sys.argv[1]))
request = types.SimpleNamespace(cookies={"sid": sys.argv[2]})
"#;

/// The body of the first ```` ```python ```` block after `MARKER` in docs/layout.md.
fn readme_snippet() -> String {
    let readme = include_str!("../docs/layout.md");
    let (_, after) = readme
        .split_once(MARKER)
        .unwrap_or_else(|| panic!("docs/layout.md no longer has the line {MARKER:?}"));
    let (_, block) = after
        .split_once("```python\n")
        .unwrap_or_else(|| panic!("docs/layout.md has no ```python block after {MARKER:?}"));
    let (code, _) = block
        .split_once("\n```")
        .expect("the guide's Python block is closed");
    code.to_owned()
}

/// Fails, naming the package, unless the system Python can import `redis`.
fn require_python_redis() {
    let status = Command::new(PYTHON)
        .args(["-c", "import redis"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!("{PYTHON} is needed to run the guide's Python (apt-get install python3): {e}")
        });
    assert!(
        status.success(),
        "{PYTHON} cannot import redis: the cross-language test needs Debian's package \
         `python3-redis` (apt-get install python3-redis)"
    );
}

/// Runs the guide's snippet, behind the harness, against the server on `port` with the cookie
/// value `token`; returns what it printed.
fn run_snippet(port: u16, token: &str) -> String {
    let script = format!("{HARNESS}\n{}\n", readme_snippet());
    let mut child = Command::new(PYTHON)
        .args(["-", &port.to_string(), token])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {PYTHON}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the guide's Python snippet failed ({}):\n{}\n--- script ---\n{script}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the snippet prints UTF-8")
}

#[tokio::test]
async fn the_readme_python_snippet_reads_the_session() {
    require_python_redis();
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| l).await;
    let mut browser = Browser::new(app);
    for _ in 0..3 {
        browser.get("/counter").await;
    }
    browser.post_form("/login", "user=alice").await;
    let token = browser.cookie.clone().expect("the session has a cookie");

    // What the session holds, as the application sees it.
    let count = browser.get("/counter/peek").await.body;
    let user = browser.get("/me").await.body;
    assert_eq!((count.as_str(), user.as_str()), ("3", "alice"));

    let printed = run_snippet(server.port, &token);
    assert_eq!(
        printed.trim_end(),
        format!("{count} {user}"),
        "the guide's snippet prints `count user` as the session holds them"
    );
}

/// A login whose per-user cap evicts more entries than Lua can unpack at once (about 8,000) still
/// succeeds, and leaves the index holding the cap: the eviction runs in batches, so the script
/// never fails after it has written the login.
#[tokio::test]
async fn a_login_whose_cap_evicts_ten_thousand_index_entries_succeeds() {
    const STALE: usize = 10_000;
    let server = RedisServer::start();
    let (app, _) = support::app_on(support::store_on(&server).await, |l| {
        l.with_max_sessions_per_user(1)
    })
    .await;
    let redis = server.probe().await;
    // Entries of sessions that expire long after now, as an index of a very busy account holds.
    let far: f64 = 4_000_000_000_000.0;
    let members: Vec<(f64, String)> = (0..STALE).map(|i| (far, format!("{i:064x}"))).collect();
    for chunk in members.chunks(1000) {
        let _: () = redis
            .zadd(
                "session:user:alice",
                None,
                None,
                false,
                false,
                chunk.to_vec(),
            )
            .await
            .unwrap();
    }
    let mut browser = Browser::new(app);
    let login = browser.post_form("/login", "user=alice").await;
    assert_eq!(login.status, StatusCode::NO_CONTENT);
    assert_eq!(browser.get("/me").await.body, "alice");
    let left: Vec<String> = redis
        .zrange("session:user:alice", 0, -1, None, false, None, false)
        .await
        .unwrap();
    let key_id = session_key("", browser.cookie.as_deref().unwrap());
    assert_eq!(left, [key_id], "only the new session is indexed");
}

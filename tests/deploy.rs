//! The crate as it is deployed, black-box over real TCP: the demo binary (the README's first
//! command) with Redis, without it and with a configured Redis that is down; the examples as a user
//! runs them, each serving what its header promises and stopping cleanly on SIGTERM and Ctrl-C; two
//! demo instances on one Redis behind nginx, round robin; a `rediss://` URL checked against the
//! system's trust store; and the login example in a real browser (headless Chromium driven through
//! `chromedriver`), with what the page shows, what the browser keeps and what Redis holds checked at
//! each step. Requests no browser would send (bad names, a second login on a live session) go over
//! plain HTTP.
//!
//! Needs nginx, Debian's `chromium` and `chromium-driver` packages, and the example binaries that
//! `cargo test` builds (`cargo build --examples` when running this binary alone). The TLS test sets
//! `SSL_CERT_FILE` for the whole process: nothing else here reads the trust store (every other Redis
//! is plain `redis://`, and Chromium talks plain HTTP to the example).

mod support;

use std::collections::HashSet;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum_redis_session::{RedisStore, SessionLayer};
use cookie::SameSite;
use fantoccini::Locator;
use support::{
    example_binary, free_port, request, session_key, session_keys, token_of, Browser, ChromeDriver,
    ExampleProcess, Gate, Nginx, RawReply, RedisServer, TlsFiles, Window, WireReply,
};

/// The demo example, started with `env` on top of plain-http cookies.
struct Demo(ExampleProcess);

impl Demo {
    fn start(env: &[(&str, &str)]) -> Self {
        Self(ExampleProcess::start("demo", env))
    }

    fn log(&self) -> String {
        self.0.log()
    }

    fn request(&self, method: &str, path: &str, cookie: Option<&str>) -> RawReply {
        self.0.request(method, path, cookie)
    }

    /// Counts up twice with the cookie the first response set, and returns the cookie's token.
    fn count_twice(&self) -> String {
        let (status, set_cookie, body) = self.request("GET", "/counter", None);
        assert_eq!((status, body.as_str()), (200, "1"));
        let set_cookie = set_cookie.expect("a session cookie");
        assert!(
            set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
            "{set_cookie}"
        );
        let token = token_of(&set_cookie);
        let (_, _, body) = self.request("GET", "/counter", Some(&token));
        assert_eq!(body, "2");
        token
    }
}

#[test]
fn demo_serves_the_contract_on_redis() {
    let server = RedisServer::start();
    let demo = Demo::start(&[("REDIS_URL", &server.url()), ("SESSION_PREFIX", "demo:")]);
    assert_eq!(demo.request("GET", "/health", None).2, "ok");
    let token = demo.count_twice();
    let key = support::session_key("demo:", &token);
    let count = Command::new("redis-cli")
        .args(["-p", &server.port.to_string(), "hget", &key, "count"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&count.stdout).trim(),
        "2",
        "the session lives in Redis"
    );
    let metrics = demo.request("GET", "/metrics", None).2;
    assert!(
        metrics.contains("session_saves_total{kind=\"create\"} 1"),
        "{metrics}"
    );
}

/// `SESSION_RECORD_IP=1`: the demo serves with each connection's peer address, and a login's
/// device shows it; without it, the device list has no `ip` at all.
#[test]
fn the_demo_lists_the_client_ip_only_with_session_record_ip() {
    let server = RedisServer::start();
    for (record, ip, user) in [("1", Some("127.0.0.1"), "alice"), ("0", None, "bob")] {
        let env = [
            ("REDIS_URL", server.url()),
            ("SESSION_RECORD_IP", record.to_owned()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let demo = Demo::start(&env);
        let (status, set_cookie, _) =
            support::request(demo.0.port, "POST", "/login", None, &format!("user={user}"));
        assert_eq!(status, 204);
        let token = token_of(&set_cookie.expect("the login's cookie"));
        let (status, _, body) = demo.request("GET", "/sessions", Some(&token));
        assert_eq!(status, 200, "{body}");
        let listed: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        assert_eq!(listed.len(), 1, "{body}");
        assert_eq!(listed[0].get("ip").and_then(|ip| ip.as_str()), ip, "{body}");
    }
}

#[test]
fn demo_without_redis_url_uses_the_default_redis_or_falls_back_to_memory() {
    let default_redis_answers = TcpStream::connect("127.0.0.1:6379").is_ok();
    let demo = Demo::start(&[]);
    demo.count_twice();
    let fell_back = demo.log().contains("using the in-memory store");
    assert_eq!(fell_back, !default_redis_answers, "log: {}", demo.log());
}

#[test]
fn demo_with_redis_url_down_starts_answers_503_and_recovers() {
    let port = free_port();
    let demo = Demo::start(&[("REDIS_URL", &format!("redis://127.0.0.1:{port}"))]);
    assert_eq!(demo.request("GET", "/health", None).0, 200);
    let (status, set_cookie, body) = demo.request("GET", "/counter", None);
    assert_eq!(
        (status, set_cookie, body.as_str()),
        (503, None, "session store unavailable")
    );

    let _server = RedisServer::start_on(port, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while demo.request("GET", "/counter", None).0 != 200 {
        assert!(Instant::now() < deadline, "the demo did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn typed_example_keeps_each_cart_field_in_its_own_hash_field() {
    let server = RedisServer::start();
    let mut typed = ExampleProcess::start("typed", &[("REDIS_URL", &server.url())]);
    let (status, set_cookie, body) = request(typed.port, "POST", "/cart/items", None, "item=tea");
    assert_eq!((status, body.as_str()), (200, "1 items\n"));
    let token = token_of(&set_cookie.expect("a session cookie"));
    let sid = Some(token.as_str());
    assert_eq!(
        request(typed.port, "POST", "/cart/items", sid, "item=cake").2,
        "2 items\n"
    );
    assert_eq!(
        request(typed.port, "POST", "/cart/coupon", sid, "code=SPRING").0,
        200
    );
    assert_eq!(
        request(typed.port, "GET", "/cart", sid, "").2,
        r#"{"items":["tea","cake"],"coupon":"SPRING"}"#
    );
    let key = session_key("session:", &token);
    assert_eq!(
        server.cli(&["hget", &key, "items"]).trim(),
        r#"["tea","cake"]"#
    );
    assert_eq!(server.cli(&["hget", &key, "coupon"]).trim(), r#""SPRING""#);

    assert_eq!(request(typed.port, "DELETE", "/cart", sid, "").0, 200);
    assert_eq!(
        request(typed.port, "GET", "/cart", sid, "").2,
        r#"{"items":[]}"#
    );
    assert_eq!(
        server.cli(&["hexists", &key, "coupon"]).trim(),
        "0",
        "a field the value skips is removed"
    );
    assert!(typed.terminate(Duration::from_secs(5)).success());
}

#[test]
fn examples_stop_gracefully_on_sigterm() {
    let server = RedisServer::start();
    for name in ["demo", "login", "typed"] {
        let mut example = ExampleProcess::start(name, &[("REDIS_URL", &server.url())]);
        let status = example.terminate(Duration::from_secs(5));
        assert!(status.success(), "{name} exited with {status}");
    }
}

/// The counter example has no settings: it serves on 127.0.0.1:3000 with Redis on 127.0.0.1:6379,
/// and stops on Ctrl-C (SIGINT) once the requests in flight have their answer. With nothing on
/// 6379 (as in CI), its first save waits out the 1 s command timeout, so the request below is still
/// in flight when the signal comes.
#[test]
fn counter_example_finishes_the_request_in_flight_and_stops_on_ctrl_c() {
    assert!(
        TcpStream::connect("127.0.0.1:3000").is_err(),
        "the counter example listens on 127.0.0.1:3000, which something else holds"
    );
    let child = Command::new(example_binary("counter"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the counter example is built by `cargo test`");
    let mut counter = testkit::Service::new("counter", child, 3000, String::new);
    let redis_answers = TcpStream::connect("127.0.0.1:6379").is_ok();
    let in_flight = std::thread::spawn(|| request(3000, "GET", "/", None, ""));
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    let status = counter.signal_and_wait("INT", Duration::from_secs(5));
    let (code, _, body) = in_flight.join().expect("a whole response");
    assert!(status.success(), "counter exited with {status}");
    if redis_answers {
        assert_eq!(
            (code, body.as_str()),
            (200, "You have been here 1 times.\n")
        );
    } else {
        assert_eq!((code, body.as_str()), (503, "session store unavailable"));
        assert!(
            signalled.elapsed() > Duration::from_millis(500),
            "it waited for the request in flight"
        );
    }
}

/// The upstream nginx says answered, checked to be a single one of `instances` (no retry).
fn upstream(reply: &WireReply, instances: &HashSet<String>) -> String {
    let upstream = reply.header("x-upstream").expect("X-Upstream").to_owned();
    assert!(
        instances.contains(&upstream),
        "{upstream} not in {instances:?}"
    );
    upstream
}

/// `EXISTS` of the session key the token maps to.
fn stored(redis: &RedisServer, token: &str) -> bool {
    let key = session_key("session:", token);
    redis.cli(&["exists", &key]).trim() == "1"
}

#[test]
fn one_session_across_two_instances_behind_nginx() {
    let redis = RedisServer::start();
    let url = redis.url();
    let demos = [
        ExampleProcess::start("demo", &[("REDIS_URL", &url)]),
        ExampleProcess::start("demo", &[("REDIS_URL", &url)]),
    ];
    let instances: HashSet<String> = demos
        .iter()
        .map(|d| format!("127.0.0.1:{}", d.port))
        .collect();
    let nginx = Nginx::start(&demos.iter().map(|d| d.port).collect::<Vec<_>>());

    // Counting: 1, 2, 3, … with the first response's cookie, the instances taking turns.
    let first = nginx.request("GET", "/counter", None, "");
    assert_eq!((first.status, first.body.as_str()), (200, "1"), "{first:?}");
    let token = token_of(first.header("set-cookie").expect("a session cookie"));
    let mut answered = vec![upstream(&first, &instances)];
    for count in 2..=6 {
        let reply = nginx.request("GET", "/counter", Some(&token), "");
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, count.to_string().as_str()),
            "{reply:?}"
        );
        if let Some(set_cookie) = reply.header("set-cookie") {
            assert_eq!(token_of(set_cookie), token, "the cookie is kept");
        }
        answered.push(upstream(&reply, &instances));
    }
    assert!(
        answered.windows(2).all(|w| w[0] != w[1]),
        "round robin alternates: {answered:?}"
    );
    assert_eq!(answered.iter().cloned().collect::<HashSet<_>>(), instances);
    let key = session_key("session:", &token);
    assert_eq!(redis.cli(&["hget", &key, "count"]).trim(), "6");

    // Login cycles the id: the new cookie carries the session on, the old one is dead.
    let login = nginx.request("POST", "/login", Some(&token), "user=alice");
    assert_eq!(login.status, 204, "{login:?}");
    let user = token_of(login.header("set-cookie").expect("a cycled cookie"));
    assert_ne!(user, token, "the id is cycled");
    assert!(!stored(&redis, &token) && stored(&redis, &user));
    let mut answered = HashSet::new();
    for _ in 0..4 {
        let me = nginx.request("GET", "/me", Some(&user), "");
        assert_eq!((me.status, me.body.as_str()), (200, "alice"), "{me:?}");
        answered.insert(upstream(&me, &instances));
    }
    assert_eq!(answered, instances, "alice on both instances");
    let counter = nginx.request("GET", "/counter", Some(&user), "");
    assert_eq!(counter.body, "7", "the data moved with the id: {counter:?}");
    let old = nginx.request("GET", "/counter", Some(&token), "");
    assert_eq!(
        (old.status, old.body.as_str()),
        (200, "1"),
        "the old cookie gets a fresh session: {old:?}"
    );
    let fresh = token_of(old.header("set-cookie").expect("a fresh cookie"));
    assert!(fresh != token && fresh != user);

    // Logout: a removal cookie, the key gone, and neither instance knows alice any more.
    let logout = nginx.request("POST", "/logout", Some(&user), "");
    assert_eq!(logout.status, 204, "{logout:?}");
    let removal = logout.header("set-cookie").expect("a removal cookie");
    assert!(
        removal.starts_with("sid=;") && removal.contains("Max-Age=0"),
        "{removal}"
    );
    assert!(!stored(&redis, &user), "the Redis key is gone");
    let mut answered = HashSet::new();
    for _ in 0..4 {
        let me = nginx.request("GET", "/me", Some(&user), "");
        assert_eq!(me.status, 401, "{me:?}");
        answered.insert(upstream(&me, &instances));
    }
    assert_eq!(answered, instances, "logged out on both instances");
}

async fn browser_on(url: &str) -> Browser {
    let store = RedisStore::connect(url).await.unwrap();
    let layer = SessionLayer::new(store.with_command_timeout(time::Duration::milliseconds(500)));
    Browser::new(support::app(layer, Gate::default()))
}

#[tokio::test]
async fn rediss_url_stores_sessions_on_a_verified_server_and_refuses_others() {
    let trusted = TlsFiles::generate();
    let untrusted = TlsFiles::generate();
    let (good, bad) = (trusted.server(), untrusted.server());
    std::env::set_var("SSL_CERT_FILE", &trusted.ca);

    let mut refused = browser_on(&format!("rediss://127.0.0.1:{}", bad.port)).await;
    assert_eq!(
        refused.get("/counter").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let mut browser = browser_on(&format!("rediss://127.0.0.1:{}", good.port)).await;
    browser
        .get_until_ok("/counter", Duration::from_secs(10))
        .await;
    assert_eq!(browser.get("/counter").await.body, "2");
    let key = session_key("session:", browser.cookie.as_ref().unwrap());
    assert_eq!(
        good.cli(&["hget", &key, "count"]).trim(),
        "2",
        "stored over TLS"
    );
    assert_eq!(
        refused.get("/counter").await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "still refused"
    );
}

/// The sessions in Redis bound to a user (holding `$user`), sorted.
fn signed_in_sessions(server: &RedisServer) -> Vec<String> {
    session_keys(server)
        .into_iter()
        .filter(|key| !server.cli(&["hget", key, "$user"]).trim().is_empty())
        .collect()
}

/// The CSRF token a page's first form carries.
fn csrf_of(page: &str) -> String {
    let (_, rest) = page
        .split_once(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token");
    let token = &rest[..rest.find('"').expect("the value's closing quote")];
    assert_eq!(token.len(), 86, "a masked token in base64url: {token}");
    token.to_owned()
}

/// The key ids in a user's index (sorted set `session:user:{user}`), sorted.
fn user_index(server: &RedisServer, user: &str) -> Vec<String> {
    let mut ids: Vec<String> = server
        .cli(&["zrange", &format!("session:user:{user}"), "0", "-1"])
        .lines()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids
}

/// The Redis key of the session whose cookie `window` holds.
async fn key_of(window: &Window) -> String {
    let cookie = window
        .cookie("sid")
        .await
        .expect("the browser holds a sid cookie");
    session_key("session:", cookie.value())
}

async fn assert_login_form(window: &Window) {
    window.find("#user").await;
    window.find("#login").await;
    assert!(
        !window.shows("#signed-in").await,
        "the login form page says someone is signed in:\n{}",
        window.source().await.unwrap()
    );
}

async fn log_in(window: &Window, name: &str) {
    window.find("#user").await.send_keys(name).await.unwrap();
    window.find("#login").await.click().await.unwrap();
}

#[tokio::test]
async fn log_in_see_the_flash_once_and_log_out_in_a_real_browser() {
    let server = RedisServer::start();
    let app = ExampleProcess::start("login", &[("REDIS_URL", &server.url())]);
    let home = format!("http://127.0.0.1:{}/", app.port);
    let driver = ChromeDriver::start();

    // Browser A, fresh: the login form, and an anonymous session for its CSRF token, which holds
    // no trace of the token: it is derived from the cookie, and masked anew on every page.
    let a = driver.open().await;
    a.goto(&home).await.unwrap();
    assert_login_form(&a).await;
    let anonymous = key_of(&a).await;
    assert_eq!(session_keys(&server), vec![anonymous.clone()]);
    assert_eq!(signed_in_sessions(&server), Vec::<String>::new());
    let first = csrf_of(&a.source().await.unwrap());
    a.refresh().await.unwrap();
    let second = csrf_of(&a.source().await.unwrap());
    assert_ne!(first, second, "a fresh mask on every page");
    assert_eq!(key_of(&a).await, anonymous, "for the same session");
    let stored = server.cli(&["hgetall", &anonymous]);
    assert!(
        !stored.contains("$csrf") && !stored.contains(&first) && !stored.contains(&second),
        "{stored}"
    );

    log_in(&a, "alice").await;
    assert_eq!(a.text("#signed-in").await, "Signed in as alice");
    assert_eq!(a.text("#flash").await, "Welcome, alice!");
    assert_eq!(
        a.current_url().await.unwrap().as_str(),
        home,
        "the login answers with a redirect to the home page"
    );

    // One session in Redis, under the SHA-256 of the browser's cookie, never the token itself.
    let keys = session_keys(&server);
    assert_eq!(keys.len(), 1, "exactly one session after login: {keys:?}");
    assert_ne!(
        keys[0], anonymous,
        "the login moved the session to a new id"
    );
    let key_id = keys[0].strip_prefix("session:").unwrap();
    assert!(
        key_id.len() == 64
            && key_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "the key is 'session:' and 64 lowercase hex digits: {}",
        keys[0]
    );
    assert_eq!(keys[0], key_of(&a).await);
    let cookie = a.cookie("sid").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");
    assert_eq!(cookie.same_site(), Some(SameSite::Lax), "{cookie}");
    assert!(!key_id.contains(cookie.value()));
    assert_eq!(server.cli(&["hget", &keys[0], "name"]).trim(), "\"alice\"");
    assert_eq!(user_index(&server, "alice"), vec![key_id.to_owned()]);

    // Reloading: still signed in, and the flash was shown once.
    a.refresh().await.unwrap();
    assert_eq!(a.text("#signed-in").await, "Signed in as alice");
    assert!(
        !a.shows("#flash").await,
        "the flash shows once:\n{}",
        a.source().await.unwrap()
    );
    assert!(!a.source().await.unwrap().contains("Welcome"));

    // Browser B, its own cookie jar, opened while A is signed in: logged out, and it stays so.
    let b = driver.open().await;
    b.goto(&home).await.unwrap();
    assert_login_form(&b).await;
    b.refresh().await.unwrap();
    assert_login_form(&b).await;
    assert_ne!(key_of(&b).await, keys[0]);
    assert_eq!(signed_in_sessions(&server), keys, "B is nobody's");

    // A logs out: the login form with its notice, and nothing of alice left in Redis.
    a.find("#logout").await.click().await.unwrap();
    assert_login_form(&a).await;
    assert_eq!(a.text("#flash").await, "You have been logged out.");
    assert_ne!(key_of(&a).await, keys[0], "the signed-in cookie is gone");
    assert_eq!(signed_in_sessions(&server), Vec::<String>::new());
    assert!(!session_keys(&server).contains(&keys[0]));
    assert_eq!(user_index(&server, "alice"), Vec::<String>::new());
    a.goto(&home).await.unwrap();
    assert_login_form(&a).await;
}

#[tokio::test]
async fn log_out_everywhere_ends_the_other_browsers_session() {
    let server = RedisServer::start();
    let app = ExampleProcess::start("login", &[("REDIS_URL", &server.url())]);
    let home = format!("http://127.0.0.1:{}/", app.port);
    let driver = ChromeDriver::start();

    // Alice on two browsers, Bob on a third.
    let (a, b, c) = (
        driver.open().await,
        driver.open().await,
        driver.open().await,
    );
    for (window, name) in [(&a, "alice"), (&b, "alice"), (&c, "bob")] {
        window.goto(&home).await.unwrap();
        log_in(window, name).await;
        assert_eq!(
            window.text("#signed-in").await,
            format!("Signed in as {name}")
        );
    }
    let mut alices = [key_of(&a).await, key_of(&b).await];
    alices.sort();
    let mut all = vec![alices[0].clone(), alices[1].clone(), key_of(&c).await];
    all.sort();
    assert_eq!(signed_in_sessions(&server), all);
    let ids: Vec<String> = alices
        .iter()
        .map(|k| k["session:".len()..].to_owned())
        .collect();
    assert_eq!(user_index(&server, "alice"), ids);

    a.find("#logout-everywhere").await.click().await.unwrap();
    assert_login_form(&a).await;
    b.refresh().await.unwrap();
    assert_login_form(&b).await;
    c.refresh().await.unwrap();
    assert_eq!(c.text("#signed-in").await, "Signed in as bob");
    assert_eq!(signed_in_sessions(&server), vec![key_of(&c).await]);
}

/// The devices page lists both of alice's browsers, by Chrome's user agent, one of them as this
/// browser; signing the other out from it logs that browser out and leaves this one signed in.
#[tokio::test]
async fn the_devices_page_lists_both_browsers_and_signs_the_other_out() {
    let server = RedisServer::start();
    let app = ExampleProcess::start("login", &[("REDIS_URL", &server.url())]);
    let home = format!("http://127.0.0.1:{}/", app.port);
    let driver = ChromeDriver::start();
    let (a, b) = (driver.open().await, driver.open().await);
    for window in [&a, &b] {
        window.goto(&home).await.unwrap();
        log_in(window, "alice").await;
        assert_eq!(window.text("#signed-in").await, "Signed in as alice");
    }
    a.find("#devices-link").await.click().await.unwrap();
    a.find("#devices").await;
    let listed = a
        .find_all(Locator::Css("#devices li.device"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 2, "{}", a.source().await.unwrap());
    for device in &listed {
        let agent = device.find(Locator::Css(".agent")).await.unwrap();
        assert!(agent.text().await.unwrap().contains("Chrome"));
    }
    let current = a
        .find_all(Locator::Css("#devices li.device.current"))
        .await
        .unwrap();
    assert_eq!(current.len(), 1);
    assert!(current[0].text().await.unwrap().contains("(this browser)"));

    a.find("#devices li.device:not(.current) button.end")
        .await
        .click()
        .await
        .unwrap();
    // The click's page replaces this one: until it has, the old list (or none) shows.
    let started = std::time::Instant::now();
    let listed = loop {
        let listed = a.find_all(Locator::Css("#devices li.device")).await;
        let listed = listed.map_or(0, |listed| listed.len());
        if listed == 1 || started.elapsed() > std::time::Duration::from_secs(5) {
            break listed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(listed, 1, "{}", a.source().await.unwrap());
    b.refresh().await.unwrap();
    assert_login_form(&b).await;
    a.goto(&home).await.unwrap();
    assert_eq!(a.text("#signed-in").await, "Signed in as alice");
    assert_eq!(signed_in_sessions(&server), vec![key_of(&a).await]);
}

#[tokio::test]
async fn names_are_shown_as_text_and_bad_ones_refused() {
    let server = RedisServer::start();
    let app = ExampleProcess::start("login", &[("REDIS_URL", &server.url())]);
    let driver = ChromeDriver::start();

    // Markup in a name is shown as typed, not interpreted.
    let name = r#"<b id="x">mallory</b> & "co""#;
    let window = driver.open().await;
    window
        .goto(&format!("http://127.0.0.1:{}/", app.port))
        .await
        .unwrap();
    log_in(&window, name).await;
    assert_eq!(
        window.text("#signed-in").await,
        format!("Signed in as {name}")
    );
    assert_eq!(window.text("#flash").await, format!("Welcome, {name}!"));
    assert!(!window.shows("#x").await, "the name became markup");

    // The form keeps browsers from sending these; a hand-made request gets a 400 page and signs
    // nobody in.
    let long = format!("user={}", "a".repeat(65));
    for form in ["user=", "user=+++", "other=1", long.as_str(), "user=a%0Ab"] {
        let (status, _, body) = request(app.port, "POST", "/login", None, form);
        assert_eq!(status, 400, "{form:?}: {body}");
        assert!(
            body.contains("Enter a name of 1 to 64 characters, on one line."),
            "{body}"
        );
        assert!(
            body.contains("id=\"user\""),
            "the page offers the form again"
        );
    }
    assert_eq!(
        signed_in_sessions(&server).len(),
        1,
        "only the browser's session"
    );
}

#[test]
fn logging_in_again_moves_the_session_to_a_new_id_and_every_post_needs_its_token() {
    let server = RedisServer::start();
    let app = ExampleProcess::start("login", &[("REDIS_URL", &server.url())]);
    let wire = support::request_with_headers(app.port, "GET", "/", None, "");
    assert_eq!(
        wire.header("content-security-policy"),
        Some("frame-ancestors 'none'"),
        "no other site may frame the pages"
    );
    let anonymous = token_of(wire.header("set-cookie").expect("a session for the token"));
    let token = csrf_of(&wire.body);
    let (_, _, elsewhere) = request(app.port, "GET", "/", None, "");

    // Without the token, with another session's, or with something else, a login is refused and
    // signs nobody in.
    for form in [
        "user=alice".to_owned(),
        format!("user=alice&csrf={}", csrf_of(&elsewhere)),
        format!("user=alice&csrf={}", "0".repeat(32)),
        format!("user=alice&csrf={}", &token[1..]),
        format!("user=alice&csrf={}", "A".repeat(1 << 20)),
    ] {
        let (status, _, _) = request(app.port, "POST", "/login", Some(&anonymous), &form);
        assert_eq!(status, 403, "{form:.100}");
    }
    assert_eq!(signed_in_sessions(&server), Vec::<String>::new());

    // Any page's token will do: here a later one of the same session.
    let (_, _, page) = request(app.port, "GET", "/", Some(&anonymous), "");
    assert_ne!(csrf_of(&page), token);
    let form = format!("user=alice&csrf={}", csrf_of(&page));
    let (status, set_cookie, _) = request(app.port, "POST", "/login", Some(&anonymous), &form);
    assert_eq!(status, 303);
    let first = token_of(&set_cookie.expect("login sets the cookie"));
    assert_ne!(first, anonymous);
    // The login rotated the token: the old one no longer logs anyone out.
    let (_, _, page) = request(app.port, "GET", "/", Some(&first), "");
    let rotated = csrf_of(&page);
    assert_ne!(rotated, token);
    let stale = format!("csrf={token}");
    let (status, _, _) = request(app.port, "POST", "/logout", Some(&first), &stale);
    assert_eq!(status, 403);

    let form = format!("user=bob&csrf={rotated}");
    let (status, set_cookie, _) = request(app.port, "POST", "/login", Some(&first), &form);
    assert_eq!(status, 303);
    let second = token_of(&set_cookie.expect("a new id means a new cookie"));
    assert_ne!(first, second);
    // The old id is dead at once: an id known before login (fixation) is worth nothing after.
    assert_eq!(
        signed_in_sessions(&server),
        vec![session_key("session:", &second)]
    );
    assert!(!session_keys(&server).contains(&session_key("session:", &first)));
    let (_, _, page) = request(app.port, "GET", "/", Some(&first), "");
    assert!(page.contains("id=\"login\""), "{page}");
    let (_, _, page) = request(app.port, "GET", "/", Some(&second), "");
    assert!(page.contains("Signed in as bob"), "{page}");
}

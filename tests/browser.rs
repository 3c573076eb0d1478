//! The login example in a real browser: headless Chromium, driven through `chromedriver`, against
//! the example running as its own process on a real `redis-server`. What a user sees on the page,
//! what the browser keeps as its cookie, and what Redis holds are checked at each step. Requests no
//! browser would send (bad names, a second login on a live session) go over plain HTTP.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages, and the example binary that `cargo
//! test` builds (`cargo build --example login` when running this test alone).

mod support;

use cookie::SameSite;
use support::{request, session_key, token_of, ChromeDriver, ExampleProcess, RedisServer, Window};

/// The session hashes in Redis (not the per-user index), sorted.
fn session_keys(server: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = server
        .cli(&["--scan", "--pattern", "session:*"])
        .lines()
        .filter(|key| !key.is_empty() && !key.starts_with("session:user:"))
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
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

    // Browser A, fresh: the login form, and nothing in Redis for a visitor who only looked.
    let a = driver.open().await;
    a.goto(&home).await.unwrap();
    assert_login_form(&a).await;
    assert!(
        a.cookie("sid").await.is_none(),
        "a visit alone sets no cookie"
    );
    assert_eq!(session_keys(&server), Vec::<String>::new());

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
    assert!(b.cookie("sid").await.is_none());
    assert_eq!(session_keys(&server), keys, "B's visits created no session");

    // A logs out: the login form with its notice, no cookie, and nothing left in Redis.
    a.find("#logout").await.click().await.unwrap();
    assert_login_form(&a).await;
    assert_eq!(a.text("#flash").await, "You have been logged out.");
    assert!(
        a.cookie("sid").await.is_none(),
        "the logout removes the cookie"
    );
    assert_eq!(session_keys(&server), Vec::<String>::new());
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
    assert_eq!(session_keys(&server), all);
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
    assert_eq!(session_keys(&server), vec![key_of(&c).await]);
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

    // The form keeps browsers from sending these; a hand-made request gets a 400 page and no session.
    let long = format!("user={}", "a".repeat(65));
    for form in ["user=", "user=+++", "other=1", long.as_str(), "user=a%0Ab"] {
        let (status, set_cookie, body) = request(app.port, "POST", "/login", None, form);
        assert_eq!(status, 400, "{form:?}: {body}");
        assert!(
            body.contains("Enter a name of 1 to 64 characters, on one line."),
            "{body}"
        );
        assert!(
            body.contains("id=\"user\""),
            "the page offers the form again"
        );
        assert_eq!(set_cookie, None, "{form:?}");
    }
    assert_eq!(session_keys(&server).len(), 1, "only the browser's session");
}

#[test]
fn logging_in_again_moves_the_session_to_a_new_id() {
    let server = RedisServer::start();
    let app = ExampleProcess::start("login", &[("REDIS_URL", &server.url())]);

    let (_, set_cookie, _) = request(app.port, "POST", "/login", None, "user=alice");
    let first = token_of(&set_cookie.expect("login sets the cookie"));
    let (status, set_cookie, _) = request(app.port, "POST", "/login", Some(&first), "user=bob");
    assert_eq!(status, 303);
    let second = token_of(&set_cookie.expect("a new id means a new cookie"));
    assert_ne!(first, second);
    // The old id is dead at once: an id known before login (fixation) is worth nothing after.
    assert_eq!(
        session_keys(&server),
        vec![session_key("session:", &second)]
    );
    let (_, _, page) = request(app.port, "GET", "/", Some(&first), "");
    assert!(page.contains("id=\"login\""), "{page}");
    let (_, _, page) = request(app.port, "GET", "/", Some(&second), "");
    assert!(page.contains("Signed in as bob"), "{page}");
}

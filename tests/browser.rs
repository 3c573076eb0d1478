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

/// The sessions in Redis bound to a user (holding `$user`), sorted.
fn signed_in_sessions(server: &RedisServer) -> Vec<String> {
    session_keys(server)
        .into_iter()
        .filter(|key| !server.cli(&["hget", key, "$user"]).trim().is_empty())
        .collect()
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let start = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token")
        + 19;
    page[start..start + 32].to_owned()
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

    // Browser A, fresh: the login form, and an anonymous session holding only its CSRF token.
    let a = driver.open().await;
    a.goto(&home).await.unwrap();
    assert_login_form(&a).await;
    let anonymous = key_of(&a).await;
    assert_eq!(session_keys(&server), vec![anonymous.clone()]);
    assert_eq!(signed_in_sessions(&server), Vec::<String>::new());
    assert_eq!(
        server.cli(&["hget", &anonymous, "$csrf"]).trim(),
        csrf_of(&a.source().await.unwrap()),
        "the form's token is the session's"
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

    // Without the token, or with another, a login is refused and signs nobody in.
    for form in [
        "user=alice".to_owned(),
        format!("user=alice&csrf={}", "0".repeat(32)),
    ] {
        let (status, _, _) = request(app.port, "POST", "/login", Some(&anonymous), &form);
        assert_eq!(status, 403, "{form}");
    }
    assert_eq!(signed_in_sessions(&server), Vec::<String>::new());

    let form = format!("user=alice&csrf={token}");
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

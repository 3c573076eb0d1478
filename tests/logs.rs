//! No token in any log line, and a foreign format's bad input logged once, without the value. Its
//! own test binary: tracing caches which call sites are enabled, and a test running in parallel on
//! another thread without a subscriber could settle that before these tests' subscribers exist.

mod support;

use axum::http::StatusCode;
use axum_redis_session::{Format, SessionLayer};
use support::{Browser, Captured, RedisServer};

#[tokio::test]
async fn no_token_appears_in_any_log_line() {
    let captured = Captured::default();
    let subscriber = captured.subscriber(tracing::Level::TRACE);
    // This test runs on a current-thread runtime, so every task it spawns logs through this default.
    let _guard = tracing::subscriber::set_default(subscriber);
    // fred logs through the `log` crate, not tracing: bridge its records into this subscriber.
    tracing_log::LogTracer::init().expect("the only `log` logger of this test binary");

    let mut server = RedisServer::start();
    let store = support::store_on(&server).await;
    let store = store.with_command_timeout(time::Duration::milliseconds(200));
    let (app, _) = support::app_on(store, |l| l).await;
    let mut browser = Browser::new(app.clone());
    let mut tokens = Vec::new();
    browser.get("/counter").await;
    tokens.extend(browser.cookie.clone());
    browser.post_form("/login", "user=alice").await;
    tokens.extend(browser.cookie.clone());
    browser.put("/kv/a", "1").await;
    let duplicate = format!("sid={0}; sid={0}", tokens[1]);
    browser
        .send_raw_cookies("/counter/peek", &[duplicate.as_bytes()])
        .await;
    let mut other = Browser::new(app.clone());
    other.post_form("/login", "user=alice").await;
    tokens.extend(other.cookie.clone());
    browser.post_form("/logout-everywhere", "").await;
    server.stop();
    let mut failing = Browser::with_cookie(app, Some(tokens[1].clone()));
    assert_eq!(
        failing.get("/counter").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let logs = captured.text();
    eprintln!(
        "CAPTURED TAIL: {}",
        &logs[logs.len().saturating_sub(3000)..]
    );
    for line in [
        "session created",
        "session id cycled",
        "session store failed",
        "more than one session cookie",
    ] {
        assert!(logs.contains(line), "expected a log line with {line:?}");
    }
    // fred's own lines are among them (its connection set-up, at debug and trace level).
    let fred_lines: Vec<&str> = logs.lines().filter(|l| l.contains("fred::")).collect();
    assert!(
        fred_lines.len() > 10
            && fred_lines
                .iter()
                .any(|l| l.to_ascii_lowercase().contains("connect")),
        "fred's log records were not captured: {fred_lines:?}"
    );
    for token in &tokens {
        assert!(!logs.contains(token.as_str()), "token {token} logged");
        let key = support::session_key("", token);
        assert!(!logs.contains(&key), "the full key id of {token} logged");
    }

    // Each request's events sit in a `session` span named by the key id's prefix, never the token,
    // and carry how long their round trip took.
    let login_key = support::session_key("", &tokens[1]);
    let span = format!("session{{key=\"{}\"}}", &login_key[..8]);
    let saved = logs
        .lines()
        .find(|line| line.contains("session saved"))
        .expect("a save event");
    assert!(
        saved.contains(&span) && saved.contains("elapsed="),
        "{saved}"
    );
    for event in ["session loaded", "session created", "session id cycled"] {
        let line = logs.lines().find(|l| l.contains(event)).unwrap();
        assert!(
            line.contains("session{") && line.contains("elapsed="),
            "{line}"
        );
    }
}

/// In a foreign format, a stored value the format cannot read, or a cookie whose signature fails,
/// is a new session for that request, never a 500, and one `warn` line names the format and the
/// session's key id prefix but holds neither the cookie nor the value.
#[tokio::test]
async fn bad_foreign_input_is_a_new_session_logged_once_without_the_value() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber(tracing::Level::WARN));
    let server = RedisServer::start();

    // PHP's cookie is the id itself; the value under it is no PHP session.
    let php = support::store_on(&server).await.with_format(Format::php());
    let app = support::demo::app(SessionLayer::new(php).with_secure(false));
    let id = "stored0garbage0under0this0id0000";
    let key = format!("PHPREDIS_SESSION:{id}");
    server.cli(&["SET", &key, "not a session: SECRET-VALUE"]);
    let mut browser = Browser::with_cookie(app, Some(id.to_owned())).with_cookie_name("PHPSESSID");
    assert_eq!(
        browser.put("/kv/a", "1").await.status,
        StatusCode::NO_CONTENT
    );
    assert_ne!(browser.cookie.as_deref(), Some(id), "a new session");
    assert_eq!(
        server.cli(&["GET", &key]).trim(),
        "not a session: SECRET-VALUE"
    );
    let unreadable = captured.text();
    assert_eq!(
        unreadable
            .matches("stored session is not in its format")
            .count(),
        1,
        "{unreadable}"
    );

    // express' signature fails: a new session, the cookie not logged.
    let express = support::store_on(&server)
        .await
        .with_format(Format::express(["s3cret"]).unwrap());
    let app = support::demo::app(SessionLayer::new(express).with_secure(false));
    let forged = "s%3ASECRET-COOKIE.forged";
    let mut stranger =
        Browser::with_cookie(app, Some(forged.to_owned())).with_cookie_name("connect.sid");
    assert_eq!(stranger.get("/me").await.status, StatusCode::UNAUTHORIZED);
    let logs = captured.text();
    let refused: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("does not verify in its format"))
        .collect();
    assert_eq!(refused.len(), 1, "{logs}");
    assert!(
        refused[0].contains("WARN") && refused[0].contains("express"),
        "{logs}"
    );
    assert!(!logs.contains("SECRET"), "{logs}");
    assert!(!logs.contains(id), "PHP's id is its token: {logs}");
}

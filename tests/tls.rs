//! `rediss://` from a URL alone, as an application would configure it: the server's certificate is
//! checked against the system's trust store, pointed here at a CA made at test time. One test only,
//! because it sets `SSL_CERT_FILE` for the whole process.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use axum_redis_session::{RedisStore, SessionLayer};
use support::{session_key, Browser, Gate, TlsFiles};

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

//! Moving from tower-sessions: an axum app with tower-sessions and its Redis store
//! (`tower-sessions-redis-store`) signs a user in; the same browser's next request reaches our
//! layer, which takes the session over in three round trips, signed in as before, and never again:
//! the old record is gone and its cookie removed, so a later logout stays done.
//! Needs the `tower-sessions` feature, and its example built: `cargo build --features tower-sessions
//! --examples && cargo test --features tower-sessions --test tower_sessions`.

mod support;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use axum_redis_session::fred::prelude::*;
use axum_redis_session::{SessionLayer, TowerSessionsMigration};
use http_body_util::BodyExt;
use support::{request_with_cookie, ExampleProcess, Monitor, RedisServer};
use tower::ServiceExt;

/// A response's status, body and `Set-Cookie` headers.
struct Answer {
    status: StatusCode,
    body: String,
    cookies: Vec<String>,
}

impl Answer {
    /// The value the response sets for cookie `name`.
    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find_map(|c| c.split(';').next()?.strip_prefix(&format!("{name}=")))
    }
}

async fn send(app: &Router, method: &str, path: &str, cookie: &str) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if !cookie.is_empty() {
        request = request.header(header::COOKIE, cookie);
    }
    if method == "POST" {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        body: String::from_utf8(body.to_vec()).unwrap(),
        cookies,
    }
}

/// The app before the move: tower-sessions on Redis, whose `/login` keeps the user's id and a
/// cart in the session, as tower-sessions apps do.
async fn tower_sessions_app(server: &RedisServer) -> Router {
    let pool = Builder::from_config(Config::from_url(&server.url()).unwrap())
        .build_pool(1)
        .unwrap();
    pool.init().await.unwrap();
    let store = tower_sessions_redis_store::RedisStore::new(pool);
    let login = |session: tower_sessions::Session| async move {
        session.insert("user_id", "alice").await.unwrap();
        session
            .insert("cart", serde_json::json!({"items": [1, 2], "note": "é"}))
            .await
            .unwrap();
        "ok"
    };
    Router::new()
        .route("/login", get(login))
        .layer(tower_sessions::SessionManagerLayer::new(store).with_secure(false))
}

/// The id of tower-sessions' cookie after a login in [`tower_sessions_app`].
async fn signed_in_under_tower_sessions(server: &RedisServer) -> String {
    let signed_in = send(&tower_sessions_app(server).await, "GET", "/login", "").await;
    assert_eq!(signed_in.body, "ok");
    let id = signed_in.cookie("id").expect("tower-sessions' cookie");
    id.to_owned()
}

#[tokio::test]
async fn a_tower_sessions_login_continues_in_our_layout_once_and_a_logout_stays_done() {
    let server = RedisServer::start();
    let old = tower_sessions_app(&server).await;
    let signed_in = send(&old, "GET", "/login", "").await;
    assert_eq!(signed_in.body, "ok");
    let id = signed_in
        .cookie("id")
        .expect("tower-sessions' cookie")
        .to_owned();
    assert_eq!(server.cli(&["EXISTS", &id]).trim(), "1");

    let store = support::store_on(&server).await;
    store.ready().await.unwrap();
    let migration = TowerSessionsMigration::new().with_user_field("user_id");
    let layer = SessionLayer::new(store)
        .with_secure(false)
        .with_tower_sessions_migration(migration);
    let app = support::demo::app(layer);

    // The first request with the old cookie is signed in: the record read, our session created,
    // the record deleted; the response hands out our cookie and removes the old one.
    let mut monitor = Monitor::start(&server).await;
    let me = send(&app, "GET", "/me", &format!("id={id}")).await;
    let seen = monitor.take().await;
    assert_eq!((me.status, me.body.as_str()), (StatusCode::OK, "alice"));
    assert_eq!(seen.round_trips(), 3, "{seen:?}");
    assert!(
        me.cookies.iter().any(|c| c == "id=; Path=/; Max-Age=0"),
        "{:?}",
        me.cookies
    );
    let sid = me.cookie("sid").expect("our cookie").to_owned();
    assert_eq!(server.cli(&["EXISTS", &id]).trim(), "0");
    let key = support::session_key("session:", &sid);
    let ttl: i64 = server.cli(&["TTL", &key]).trim().parse().unwrap();
    assert!((7000..=7200).contains(&ttl), "TTL {ttl}");

    // Our session holds the old one's data, and a browser that still sends the old cookie beside
    // ours is served from ours.
    let both = format!("sid={sid}; id={id}");
    let cart = send(&app, "GET", "/kv/cart", &both).await;
    assert_eq!(cart.body, r#"{"items":[1,2],"note":"é"}"#);
    assert_eq!(send(&app, "GET", "/me", &both).await.body, "alice");
    // Bound as a login of ours is: the session is in alice's device list.
    let devices = send(&app, "GET", "/sessions", &both).await;
    let devices: serde_json::Value = serde_json::from_str(&devices.body).unwrap();
    assert_eq!(devices.as_array().map(Vec::len), Some(1), "{devices}");
    assert_eq!(devices[0]["current"], true);

    // A logout with ours stays done: the old cookie alone opens nothing any more.
    let logout = send(&app, "POST", "/logout", &both).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let mut monitor = Monitor::start(&server).await;
    let after = send(&app, "GET", "/me", &format!("id={id}")).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert!(
        after.cookies.iter().any(|c| c == "id=; Path=/; Max-Age=0"),
        "{:?}",
        after.cookies
    );
    assert_eq!(after.cookie("sid"), None);
    let seen = monitor.take().await;
    assert_eq!(seen.writing_round_trips(), 0, "{seen:?}");
}

#[tokio::test]
async fn a_failed_take_over_answers_503_and_keeps_the_old_session() {
    let server = RedisServer::start();
    let id = signed_in_under_tower_sessions(&server).await;
    let store = support::store_on(&server).await;
    store.ready().await.unwrap();
    let layer = SessionLayer::new(store)
        .with_secure(false)
        .with_tower_sessions_migration(TowerSessionsMigration::new().with_user_field("user_id"));
    let app = support::demo::app(layer);

    // Sessions full: our create is refused, so the old record and cookie must stay.
    server.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let me = send(&app, "GET", "/me", &format!("id={id}")).await;
    assert_eq!(me.status, StatusCode::SERVICE_UNAVAILABLE, "{}", me.body);
    assert!(me.cookies.is_empty(), "{:?}", me.cookies);
    server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(server.cli(&["EXISTS", &id]).trim(), "1");

    // Once Redis takes writes again, the next request takes the session over.
    let me = send(&app, "GET", "/me", &format!("id={id}")).await;
    assert_eq!(me.body, "alice");
    assert_eq!(server.cli(&["EXISTS", &id]).trim(), "0");
}

/// `examples/from_tower_sessions.rs` as a user runs it: a browser signed in under tower-sessions is
/// still signed in.
#[tokio::test]
async fn the_migration_example_keeps_a_tower_sessions_login() {
    let server = RedisServer::start();
    let id = signed_in_under_tower_sessions(&server).await;
    let example = ExampleProcess::start("from_tower_sessions", &[("REDIS_URL", &server.url())]);
    let me = request_with_cookie(example.port, "GET", "/me", Some(&format!("id={id}")), "");
    assert_eq!(me.body, "alice");
    assert_eq!(server.cli(&["EXISTS", &id]).trim(), "0");
}

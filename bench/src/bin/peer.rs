//! The servers the benchmark compares against, on the demo's routes: `peer bare` (axum with no
//! session layer, a floor), `peer tower-sessions` (tower-sessions 0.14 with its fred-based Redis
//! store) and `peer tower-sessions-moka` (the same store behind tower-sessions' own
//! `CachingSessionStore`, with a moka cache of 100,000 sessions in front: tower-sessions' cached
//! setup). Environment: `ADDR`, `REDIS_URL`.

use std::env;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::Router;
use fred::prelude::{Builder, ClientLike, Config};
use time::Duration;
use tower_sessions::{CachingSessionStore, Expiry, Session, SessionManagerLayer, SessionStore};
use tower_sessions_moka_store::MokaStore;
use tower_sessions_redis_store::RedisStore;

type Result<T> = std::result::Result<T, (StatusCode, String)>;

fn failed(error: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

async fn counter(session: Session) -> Result<String> {
    let count = session
        .get::<u64>("count")
        .await
        .map_err(failed)?
        .unwrap_or(0)
        + 1;
    session.insert("count", count).await.map_err(failed)?;
    Ok(count.to_string())
}

async fn peek(session: Session) -> Result<String> {
    Ok(session
        .get::<u64>("count")
        .await
        .map_err(failed)?
        .unwrap_or(0)
        .to_string())
}

async fn put_kv(session: Session, Path(key): Path<String>, value: String) -> Result<StatusCode> {
    session.insert(&key, value).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_kv(session: Session, Path(key): Path<String>) -> Result<(StatusCode, String)> {
    Ok(match session.get::<String>(&key).await.map_err(failed)? {
        Some(value) => (StatusCode::OK, value),
        None => (StatusCode::NOT_FOUND, String::new()),
    })
}

/// The same routes with no session at all: what the session layer costs is measured against this.
fn bare() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/counter", get(|| async { "1" }))
        .route("/counter/peek", get(|| async { "0" }))
        .route(
            "/kv/{key}",
            put(|| async { StatusCode::NO_CONTENT }).get(|| async { "" }),
        )
}

/// The Redis store the tower-sessions peers use: fred, a pool of two connections (as ours).
async fn redis_store(redis_url: &str) -> RedisStore<fred::prelude::Pool> {
    let pool = Builder::from_config(Config::from_url(redis_url).expect("REDIS_URL"))
        .build_pool(2)
        .expect("pool");
    pool.init().await.expect("redis reachable");
    RedisStore::new(pool)
}

fn tower_sessions(store: impl SessionStore + Clone) -> Router {
    let layer = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(Duration::seconds(7200)));
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/counter", get(counter))
        .route("/counter/peek", get(peek))
        .route("/kv/{key}", put(put_kv).get(get_kv))
        .layer(layer)
}

#[tokio::main]
async fn main() {
    let kind = env::args().nth(1).unwrap_or_default();
    let addr = env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let redis_url = env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let app = match kind.as_str() {
        "bare" => bare(),
        "tower-sessions" => tower_sessions(redis_store(&redis_url).await),
        "tower-sessions-moka" => tower_sessions(CachingSessionStore::new(
            MokaStore::new(Some(100_000)),
            redis_store(&redis_url).await,
        )),
        other => panic!("usage: peer bare|tower-sessions|tower-sessions-moka (got {other:?})"),
    };
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("ADDR");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .expect("serve");
}

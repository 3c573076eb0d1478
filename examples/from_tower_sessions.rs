//! Switching an app from tower-sessions without signing anybody out: point the layer at the Redis
//! tower-sessions used, and each browser's session is taken over on its first request (its data
//! kept, the user bound from the field the old app kept it in), then lives in this crate's layout.
//!
//! Run with: `cargo run --features tower-sessions --example from_tower_sessions` (Redis at
//! `REDIS_URL`, default `redis://127.0.0.1:6379`; it serves on `ADDR`, default `127.0.0.1:3000`).

use axum::routing::get;
use axum::Router;
use axum_redis_session::{Error, RedisStore, Session, SessionLayer, TowerSessionsMigration};

/// Who was signed in under tower-sessions, and still is.
async fn me(session: Session) -> Result<String, Error> {
    Ok(session.user().await?.unwrap_or_else(|| "nobody".to_owned()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let store = RedisStore::connect(&url).await?;
    // The old app called `session.insert("user_id", id)` at its login; its cookie was `id`.
    let migration = TowerSessionsMigration::new().with_user_field("user_id");
    // Plain http on localhost: browsers would not send a Secure cookie back. Keep it on in production.
    let layer = SessionLayer::new(store)
        .with_secure(false)
        .with_tower_sessions_migration(migration);
    let app = Router::new().route("/me", get(me)).layer(layer);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    axum::serve(tokio::net::TcpListener::bind(&addr).await?, app).await?;
    Ok(())
}

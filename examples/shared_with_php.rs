//! One login shared with a plain PHP app on the same Redis, behind the same host. Nothing changes
//! on the PHP side, which uses its own session module with phpredis (`session.save_handler =
//! redis`, `session.save_path = "tcp://127.0.0.1:6379"`): the user its `$_SESSION["user"]` holds is
//! the one `session.user()` returns, its other keys are values here (arrays and all), and a logout
//! here ends the session there too.
//!
//! Run with: `cargo run --example shared_with_php` (Redis at `REDIS_URL`, default
//! `redis://127.0.0.1:6379`; it serves on `ADDR`, default `127.0.0.1:3000`).

use axum::routing::{get, post};
use axum::{Json, Router};
use axum_redis_session::{Error, Format, RedisStore, Session, SessionLayer};

/// Who is signed in, by PHP or by us.
async fn me(session: Session) -> Result<String, Error> {
    Ok(session.user().await?.unwrap_or_else(|| "nobody".to_owned()))
}

/// `$_SESSION["cart"]`, as JSON.
async fn cart(session: Session) -> Result<Json<Option<serde_json::Value>>, Error> {
    Ok(Json(session.get("cart").await?))
}

/// Signs out of both apps.
async fn logout(session: Session) {
    session.destroy();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    // Keys `PHPREDIS_SESSION:{id}`, the cookie `PHPSESSID`. A hand-written PHP save handler that
    // stores `session:{id}` would add `.with_key_prefix("session:")`.
    let store = RedisStore::connect(&url).await?.with_format(Format::php());
    // Plain http on localhost: browsers would not send a Secure cookie back. Keep it on in production.
    let layer = SessionLayer::new(store).with_secure(false);
    let app = Router::new()
        .route("/me", get(me))
        .route("/cart", get(cart))
        .route("/logout", post(logout))
        .layer(layer);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    axum::serve(tokio::net::TcpListener::bind(&addr).await?, app).await?;
    Ok(())
}

//! One login shared with a Laravel app on the same Redis, behind the same host. Nothing changes on
//! the Laravel side (`SESSION_DRIVER=redis`): a user signed in through Laravel's `web` guard is the
//! one `session.user()` returns, and the app's `_token` and flash data survive our writes.
//!
//! Run with: `LARAVEL_APP_KEY=base64:… cargo run --features laravel --example shared_with_laravel`
//! (the Laravel app's `APP_KEY`; Redis at `REDIS_URL`, default `redis://127.0.0.1:6379`; it serves
//! on `ADDR`, default `127.0.0.1:3000`).

use axum::routing::{get, post};
use axum::Router;
use axum_redis_session::{Error, Format, RedisStore, Session, SessionLayer};

/// The id of the user Laravel (or we) signed in.
async fn me(session: Session) -> Result<String, Error> {
    Ok(session.user().await?.unwrap_or_else(|| "nobody".to_owned()))
}

/// Signs out of both apps.
async fn logout(session: Session) {
    session.destroy();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let app_key = std::env::var("LARAVEL_APP_KEY").map_err(|_| "set LARAVEL_APP_KEY")?;
    // Laravel 8's defaults: keys `laravel_database_laravel_cache:{id}`, the cookie `laravel_session`
    // encrypted with APP_KEY. For Laravel 11+, see `Format::laravel`'s settings (no `:` in the
    // prefix, previous keys, JSON serialisation).
    let format = Format::laravel(&app_key)?;
    let store = RedisStore::connect(&url).await?.with_format(format);
    // Plain http on localhost: browsers would not send a Secure cookie back. Keep it on in production.
    let layer = SessionLayer::new(store).with_secure(false);
    let app = Router::new()
        .route("/me", get(me))
        .route("/logout", post(logout))
        .layer(layer);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    axum::serve(tokio::net::TcpListener::bind(&addr).await?, app).await?;
    Ok(())
}

//! One login shared with an Express app on the same Redis, behind the same host. Nothing changes on
//! the Express side (express-session with connect-redis): the user its `req.session.user` holds
//! is the one `session.user()` returns, its other keys are values here, and our cookie is
//! `connect.sid`, signed with the same secret.
//!
//! Run with: `SESSION_SECRET=… cargo run --example shared_with_express` (express-session's
//! `secret`, several separated by `,` while rotating; Redis at `REDIS_URL`, default
//! `redis://127.0.0.1:6379`; it serves on `ADDR`, default `127.0.0.1:3000`).

use axum::routing::{get, post};
use axum::Router;
use axum_redis_session::{Error, Format, RedisStore, Session, SessionLayer};

/// Who is signed in, by Express or by us.
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
    let secrets = std::env::var("SESSION_SECRET").map_err(|_| "set SESSION_SECRET")?;
    // Keys `sess:{id}` (connect-redis' default prefix); the first secret signs, any verifies.
    let format = Format::express(secrets.split(','))?;
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

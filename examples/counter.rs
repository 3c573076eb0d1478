//! The smallest use: one counter per visitor, kept in Redis.
//!
//! Run with: `cargo run --example counter` (Redis on 127.0.0.1:6379, e.g. `docker compose up -d redis`),
//! then open <http://127.0.0.1:3000/> and reload. Ctrl-C (or SIGTERM) stops it.

use axum::{routing::get, Router};
use axum_redis_session::{Error, RedisStore, Session, SessionLayer};

async fn count(session: Session) -> Result<String, Error> {
    let visits = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    Ok(format!("You have been here {visits} times.\n"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    // Plain http on localhost: browsers would not send a Secure cookie back. Keep it on in production.
    let layer = SessionLayer::new(store).with_secure(false);
    let app = Router::new().route("/", get(count)).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("http://127.0.0.1:3000/");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        })
        .await?;
    Ok(())
}

//! A shopping cart as a typed session: your own `serde` struct, one Redis hash field per struct field.
//!
//! Run with: `cargo run --example typed` (Redis on 127.0.0.1:6379, e.g. `docker compose up -d redis`;
//! `REDIS_URL` and `ADDR` change that), then:
//!
//! ```text
//! curl -c jar -b jar -d item=tea http://127.0.0.1:3000/cart/items    # 1 item
//! curl -c jar -b jar -d code=SPRING http://127.0.0.1:3000/cart/coupon
//! curl -b jar http://127.0.0.1:3000/cart                              # {"items":["tea"],"coupon":"SPRING"}
//! redis-cli hgetall session:<sha-256 of the cookie>                   # items, coupon: fields of their own
//! ```
//!
//! Adding an item and applying a coupon change different fields, so two such requests racing on
//! one session both keep their change. Ctrl-C (or SIGTERM) stops it gracefully.

use axum::routing::{get, post};
use axum::{Form, Json, Router};
use axum_redis_session::{Error, RedisStore, SessionLayer, TypedSession};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    coupon: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    item: String,
}

#[derive(Deserialize)]
struct Coupon {
    code: String,
}

async fn show(cart: TypedSession<Cart>) -> Result<Json<Cart>, Error> {
    Ok(Json(cart.get().await?))
}

async fn add_item(cart: TypedSession<Cart>, Form(form): Form<Item>) -> Result<String, Error> {
    let count = cart
        .update(|cart| {
            cart.items.push(form.item);
            cart.items.len()
        })
        .await?;
    Ok(format!("{count} items\n"))
}

async fn apply_coupon(cart: TypedSession<Cart>, Form(form): Form<Coupon>) -> Result<(), Error> {
    cart.update(|cart| cart.coupon = Some(form.code)).await
}

async fn empty(cart: TypedSession<Cart>) -> Result<(), Error> {
    cart.set(&Cart::default()).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let store = RedisStore::connect(&url).await?;
    // Plain http on localhost: browsers would not send a Secure cookie back. Keep it on in production.
    let layer = SessionLayer::new(store).with_secure(false);
    let app = Router::new()
        .route("/cart", get(show).delete(empty))
        .route("/cart/items", post(add_item))
        .route("/cart/coupon", post(apply_coupon))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("http://{addr}/cart");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

/// Ctrl-C, or the SIGTERM a container runtime sends.
async fn shutdown() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

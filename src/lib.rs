//! Redis-backed sessions for axum and tower.
//!
//! Add one [`SessionLayer`] to the router and take a [`Session`] in handlers. Session state lives in
//! Redis (standalone, Cluster or Sentinel, through [`fred`]) and expires on its own:
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use axum_redis_session::{Error, RedisStore, Session, SessionLayer};
//! use time::Duration;
//!
//! async fn handler(session: Session) -> Result<String, Error> {
//!     let n: u64 = session.get("count").await?.unwrap_or(0);
//!     session.insert("count", n + 1)?;
//!     Ok(n.to_string())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let app: Router = Router::new()
//!     .route("/", get(handler))
//!     .layer(SessionLayer::new(store).with_idle_timeout(Duration::minutes(120)));
//! # Ok(()) }
//! ```
//!
//! What sets it apart:
//!
//! - **Delta writes.** Only the keys a request changed are written (`HSET`/`HDEL` on one hash per
//!   session), so concurrent requests that change different keys both keep their change.
//! - **No resurrection.** A save checks, in the same atomic script, that the session still exists: a
//!   request that was running when the user logged out cannot bring the session back.
//! - **Cheap reads.** A read is one plain `HGETALL`; the idle TTL is rolled by a second, small
//!   script only once a tenth of it has passed.
//! - **No tokens in Redis.** Keys are the SHA-256 of the cookie's token.
//! - **Honest failures.** If the save fails, the client gets 503 instead of the handler's 200.
//!
//! [`TypedSession<T>`] takes your own `serde` struct instead, one hash field per struct field, with
//! the same delta writes. Each request runs in a `session` tracing span named by a prefix of its key
//! id, and [`SessionLayer::metrics`] counts loads, saves and errors by kind, with histograms of the
//! store round-trip time by operation and of the session's size after each save.
//!
//! # Features
//!
//! - `tls` (default): `rediss://` URLs, through rustls.
//! - `metrics` (off by default): the same counters and histograms also go through the [`metrics`
//!   facade](https://docs.rs/metrics) (`session_loads_total`, `session_saves_total{kind}`,
//!   `session_store_seconds{op}`, `session_size_bytes`, ...), into whatever exporter the
//!   application installs; the layer needs no other setting:
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use axum_redis_session::{RedisStore, SessionLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // With `features = ["metrics"]`, once at start-up, the application's exporter, e.g.:
//! // metrics_exporter_prometheus::PrometheusBuilder::new().install()?;
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "ok" }))
//!     .layer(SessionLayer::new(store)); // reports to that exporter
//! # Ok(()) }
//! ```
//!
//! Where a request is loaded: [`Session`]'s first read (`src/session.rs`). Where the delta is
//! written: `commit` in `src/commit.rs`, after the handler returns. Where the cookie is set:
//! `finish` in `src/service.rs`. Modules depend downhill: layer → service → commit → session →
//! store → config, id, error.

mod config;
mod cookie;
mod csrf;
mod error;
mod extract;
mod id;
mod layer;
mod metrics;
mod service;
mod session;
mod shared;
mod store;
mod typed;

pub use ::cookie::SameSite;
pub use csrf::{CsrfVerified, CSRF_HEADER};
pub use error::Error;
pub use extract::MissingSession;
pub use fred;
pub use layer::SessionLayer;
pub use metrics::{HistogramSnapshot, Metrics, MetricsSnapshot, StoreLatency};
pub use service::{ResponseFuture, SessionService};
pub use session::Session;
pub use store::{Backend, MemoryStore, RedisStore};
pub use time;
pub use typed::TypedSession;

// The README's Rust blocks, compiled as doctests (`cargo test --doc`) so that they keep up with the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

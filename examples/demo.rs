//! The demo service: the HTTP contract that the tests and benchmarks drive.
//!
//! Run with: `cargo run --release --example demo` (Redis on 127.0.0.1:6379, e.g. `docker compose up -d
//! redis`; without one, it falls back to the in-memory store). Environment: `ADDR`, `REDIS_URL`,
//! `SESSION_TTL_SECS`, `SESSION_ABSOLUTE_SECS`, `SESSION_MAX_BYTES`, `SESSION_PREFIX`,
//! `SESSION_COOKIE`, `COOKIE_SECURE`, `SESSION_NEAR_CACHE` (max cached sessions; unset or 0: off),
//! `SESSION_MAX_PER_USER` (unset: no cap), `SESSION_RECORD_IP` (`1`: devices record the client's IP
//! from the socket address), `SESSION_FORMAT` (`native`, `php`, `laravel`, `express`) with
//! `LARAVEL_APP_KEY`, `LARAVEL_CIPHER` and `SESSION_SECRET` (see docs/demo.md).

use std::env;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use axum::extract::{Form, Path};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use axum_redis_session::{
    Backend, ClientIp, CsrfVerified, Error, Format, MemoryStore, Metrics, RedisStore, Session,
    SessionLayer,
};
use serde::Deserialize;
use time::Duration;

const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The routes of the contract, under `layer`.
pub fn app(layer: SessionLayer) -> Router {
    let metrics = layer.metrics();
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(move || render(metrics.clone())))
        .route("/counter", get(counter))
        .route("/counter/peek", get(peek))
        .route("/counter/incr", post(increment))
        .route("/kv/{key}", put(put_kv).get(get_kv).delete(delete_kv))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/flash", post(set_flash).get(take_flash))
        .route("/csrf", get(csrf_token))
        .route("/csrf/check", post(csrf_check))
        .route("/sessions", get(sessions))
        .route("/sessions/{id}", delete(end_session))
        .route("/logout-others", post(logout_others))
        .route("/critical", post(critical))
        .layer(layer)
}

async fn render(metrics: Metrics) -> String {
    metrics.to_prometheus()
}

async fn counter(session: Session) -> Result<String, Error> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", count)?;
    Ok(count.to_string())
}

/// A CSRF token of the session (masked anew on every call), creating the session if it has none.
async fn csrf_token(session: Session) -> Result<String, Error> {
    session.csrf_token().await
}

/// 204 when `X-CSRF-Token` holds a CSRF token of the session; the extractor answers 403 otherwise.
async fn csrf_check(_: CsrfVerified) -> StatusCode {
    StatusCode::NO_CONTENT
}

/// The atomic counter: concurrent requests on one session each add exactly one.
async fn increment(session: Session) -> Result<String, Error> {
    Ok(session.increment("count", 1).await?.to_string())
}

/// Under the session's lock: reads `critical` (0 when absent), waits `hold_ms`, writes it plus one
/// (as text, so `GET /kv/critical` shows it). Concurrent calls on one session serialise.
async fn critical(session: Session, uri: Uri) -> Result<Response, Error> {
    let query = uri.query().unwrap_or("");
    let hold = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("hold_ms="))
        .map_or(Ok(0), str::parse::<u64>);
    let Ok(hold) = hold else {
        return Ok((StatusCode::BAD_REQUEST, "hold_ms must be a number").into_response());
    };
    let _lock = session.lock().await?;
    let current = match session.get::<String>("critical").await? {
        None => 0,
        Some(text) => match text.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                let reply = (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "critical is not a number",
                );
                return Ok(reply.into_response());
            }
        },
    };
    tokio::time::sleep(StdDuration::from_millis(hold)).await;
    session.insert("critical", (current + 1).to_string())?;
    Ok((current + 1).to_string().into_response())
}

async fn peek(session: Session) -> Result<String, Error> {
    Ok(session.get::<u64>("count").await?.unwrap_or(0).to_string())
}

/// A failure of a `/kv` route: a session error, or a key the client may not use.
enum KvError {
    Session(Error),
    /// Keys starting with `$` are the crate's; a client asking for one made a bad request.
    ReservedKey,
}

impl From<Error> for KvError {
    fn from(error: Error) -> Self {
        Self::Session(error)
    }
}

impl IntoResponse for KvError {
    fn into_response(self) -> Response {
        match self {
            Self::Session(error) => error.into_response(),
            Self::ReservedKey => {
                (StatusCode::BAD_REQUEST, "keys may not start with '$'").into_response()
            }
        }
    }
}

fn user_key(key: &str) -> Result<&str, KvError> {
    if key.starts_with('$') {
        Err(KvError::ReservedKey)
    } else {
        Ok(key)
    }
}

async fn put_kv(
    session: Session,
    Path(key): Path<String>,
    value: String,
) -> Result<StatusCode, KvError> {
    session.insert(user_key(&key)?, value)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_kv(session: Session, Path(key): Path<String>) -> Result<Response, KvError> {
    Ok(
        match session.get::<serde_json::Value>(user_key(&key)?).await? {
            Some(serde_json::Value::String(text)) => text.into_response(),
            Some(value) => json_text(&value).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
    )
}

async fn delete_kv(session: Session, Path(key): Path<String>) -> Result<StatusCode, KvError> {
    session.remove(user_key(&key)?)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
}

async fn login(session: Session, Form(form): Form<LoginForm>) -> Response {
    if form.user.is_empty() {
        return (StatusCode::BAD_REQUEST, "user is required").into_response();
    }
    match session.login(form.user) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn me(session: Session) -> Result<Response, Error> {
    Ok(match session.user().await? {
        Some(user) => user.into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    })
}

async fn logout(session: Session) -> StatusCode {
    session.destroy();
    StatusCode::NO_CONTENT
}

async fn logout_everywhere(session: Session) -> Result<StatusCode, Error> {
    Ok(match session.destroy_everywhere().await? {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::UNAUTHORIZED,
    })
}

/// The user's live sessions, most recently seen first; 401 when not logged in.
async fn sessions(session: Session) -> Result<Response, Error> {
    if session.user().await?.is_none() {
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    }
    let devices: Vec<serde_json::Value> = session
        .devices()
        .await?
        .into_iter()
        .map(|device| {
            let mut json = serde_json::json!({
                "id": device.handle,
                "created": device.created,
                "last_seen": device.last_seen,
                "user_agent": device.user_agent,
                "current": device.current,
            });
            if let Some(ip) = device.ip {
                json["ip"] = ip.into();
            }
            json
        })
        .collect();
    Ok(axum::Json(devices).into_response())
}

/// Ends one of the user's sessions by its handle: 204, 404 when the user has none such, 401 when
/// not logged in.
async fn end_session(session: Session, Path(id): Path<String>) -> Result<StatusCode, Error> {
    if session.user().await?.is_none() {
        return Ok(StatusCode::UNAUTHORIZED);
    }
    Ok(match session.end_device(&id).await? {
        true => StatusCode::NO_CONTENT,
        false => StatusCode::NOT_FOUND,
    })
}

async fn logout_others(session: Session) -> Result<StatusCode, Error> {
    Ok(match session.end_other_devices().await? {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::UNAUTHORIZED,
    })
}

#[derive(Deserialize)]
struct FlashForm {
    message: String,
}

async fn set_flash(session: Session, Form(form): Form<FlashForm>) -> Result<StatusCode, Error> {
    session.flash("message", form.message)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn take_flash(session: Session) -> Result<Response, Error> {
    Ok(match session.take_flash::<String>("message").await? {
        Some(message) => message.into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// A value that is not a string, as the format's own framework writes JSON: PHP's `json_encode`
/// escapes `/` and every non-ASCII character; `JSON.stringify` (and ours) neither.
fn json_text(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if !matches!(env::var("SESSION_FORMAT").as_deref(), Ok("php" | "laravel")) {
        return text;
    }
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '/' => escaped.push_str("\\/"),
            c if c.is_ascii() => escaped.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    escaped.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    escaped
}

/// Reads an optional environment variable, failing with a message that names it.
fn env_var<T: FromStr>(name: &str) -> Result<Option<T>, String> {
    match env::var(name) {
        Ok(value) => value
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={value:?} is not valid")),
        Err(_) => Ok(None),
    }
}

/// The store the environment asks for: `REDIS_URL` if set (used even while Redis is down), else
/// the default address if something answers there, else memory.
pub async fn store_from_env() -> Result<Backend, String> {
    if let Ok(url) = env::var("REDIS_URL") {
        let store = RedisStore::connect(&url)
            .await
            .map_err(|e| format!("REDIS_URL: {e}"))?;
        return redis_from_env(store);
    }
    let reachable = tokio::time::timeout(
        StdDuration::from_millis(500),
        tokio::net::TcpStream::connect("127.0.0.1:6379"),
    )
    .await
    .is_ok_and(|connected| connected.is_ok());
    if reachable {
        let store = RedisStore::connect(DEFAULT_REDIS_URL)
            .await
            .map_err(|e| e.to_string())?;
        return redis_from_env(store);
    }
    if format_from_env()?.is_some() {
        return Err("SESSION_FORMAT other than native needs Redis: set REDIS_URL".to_owned());
    }
    tracing::warn!(
        "REDIS_URL is unset and nothing answers on 127.0.0.1:6379: using the in-memory store"
    );
    Ok(MemoryStore::default().into())
}

/// The Redis store's settings from the environment: in a foreign format (`SESSION_FORMAT`),
/// `SESSION_PREFIX` is that format's key prefix.
fn redis_from_env(mut store: RedisStore) -> Result<Backend, String> {
    let prefix = env_var::<String>("SESSION_PREFIX")?;
    if let Some(entries) = env_var::<usize>("SESSION_NEAR_CACHE")? {
        store = store.with_near_cache(entries);
    }
    if let Some(mut format) = format_from_env()? {
        if let Some(prefix) = prefix {
            format = format.with_key_prefix(prefix);
        }
        return Ok(store.with_format(format).into());
    }
    if let Some(prefix) = prefix {
        store = store.with_key_prefix(prefix);
    }
    Ok(store.into())
}

/// `SESSION_FORMAT` and its settings (`LARAVEL_APP_KEY`, `LARAVEL_CIPHER`, `SESSION_SECRET`);
/// `None` for the crate's own format.
fn format_from_env() -> Result<Option<Format>, String> {
    let required = |name: &str| env::var(name).map_err(|_| format!("{name} is required"));
    let format = match env::var("SESSION_FORMAT").as_deref() {
        Err(_) | Ok("native") => return Ok(None),
        Ok("php") => Format::php(),
        #[cfg(feature = "laravel")]
        Ok("laravel") => {
            let cipher = env::var("LARAVEL_CIPHER").unwrap_or_else(|_| "AES-256-CBC".to_owned());
            Format::laravel(&required("LARAVEL_APP_KEY")?)
                .and_then(|format| format.with_laravel_cipher(&cipher))
                .map_err(|e| e.to_string())?
        }
        #[cfg(not(feature = "laravel"))]
        Ok("laravel") => return Err("SESSION_FORMAT=laravel needs --features laravel".to_owned()),
        Ok("express") => {
            let secrets = required("SESSION_SECRET")?;
            Format::express(secrets.split(',')).map_err(|e| e.to_string())?
        }
        Ok(other) => {
            return Err(format!(
                "SESSION_FORMAT={other:?}: expected native, php, laravel or express"
            ))
        }
    };
    Ok(Some(format))
}

/// The layer the environment configures.
pub fn layer_from_env(store: Backend) -> Result<SessionLayer, String> {
    let mut layer = SessionLayer::new(store)
        .with_idle_timeout(Duration::seconds(
            env_var("SESSION_TTL_SECS")?.unwrap_or(7200),
        ))
        .with_secure(env_var("COOKIE_SECURE")?.unwrap_or(true));
    if let Some(secs) = env_var("SESSION_ABSOLUTE_SECS")? {
        layer = layer.with_absolute_timeout(Duration::seconds(secs));
    }
    if let Some(bytes) = env_var("SESSION_MAX_BYTES")? {
        layer = layer.with_max_bytes(bytes);
    }
    if let Some(max) = env_var("SESSION_MAX_PER_USER")? {
        layer = layer.with_max_sessions_per_user(max);
    }
    if let Some(name) = env_var::<String>("SESSION_COOKIE")? {
        layer = layer.with_cookie_name(name);
    }
    if record_ip()? {
        layer = layer.with_client_ip(ClientIp::Socket);
    }
    layer.validate().map_err(|e| e.to_string())?;
    Ok(layer)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let layer = layer_from_env(store_from_env().await?)?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("ADDR {addr}: {e}"))?;
    tracing::info!("demo listening on http://{addr}");
    let app = app(layer);
    let served = match record_ip()? {
        // Only then does each request carry its peer address.
        true => {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown())
                .await
        }
        false => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown())
                .await
        }
    };
    served.map_err(|e| e.to_string())
}

/// `SESSION_RECORD_IP=1`: devices record the client's IP from the socket address.
fn record_ip() -> Result<bool, String> {
    Ok(env_var::<u8>("SESSION_RECORD_IP")? == Some(1))
}

/// Ctrl-C, or the SIGTERM a container runtime sends: requests in flight finish and save first.
async fn shutdown() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}

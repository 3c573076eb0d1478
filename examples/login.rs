//! Log in, see a flash message once, see your devices and sign one out, log out (here or
//! everywhere): sessions in a browser.
//!
//! Run with: `cargo run --example login` (Redis on 127.0.0.1:6379, e.g. `docker compose up -d
//! redis`), then open <http://127.0.0.1:3000/>. Ctrl-C or SIGTERM stops it gracefully.
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `REDIS_URL` (default
//! `redis://127.0.0.1:6379`), `COOKIE_SECURE` (default `true`; set `false` for plain http, or the
//! browser will not send the session cookie back).
//!
//! There is no password: the point is what the session does at login and logout. A real login
//! checks credentials before `login`. Every form carries a CSRF token of the session.

use std::env;

use axum::extract::{Form, Query};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_redis_session::{Error, RedisStore, Session, SessionLayer};
use serde::Deserialize;
use tokio::signal::unix::{signal, SignalKind};
use tower_http::set_header::SetResponseHeaderLayer;

/// Longer names are refused; anything shown back on every page should be bounded.
const MAX_NAME_CHARS: usize = 64;

#[derive(Deserialize)]
struct LoginForm {
    // A missing field gets the same 400 page as an empty one, not axum's bare 422.
    #[serde(default)]
    user: String,
    #[serde(default)]
    csrf: String,
}

/// Every form posts a CSRF token of the session, so another site cannot make a browser post it.
#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// A device's "Sign out" button: which session to end.
#[derive(Deserialize)]
struct EndDeviceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    handle: String,
}

/// `/?signed-out` after a logout: a fixed notice carried in the URL, not in a session.
#[derive(Deserialize)]
struct HomeQuery {
    #[serde(rename = "signed-out")]
    signed_out: Option<String>,
}

async fn home(session: Session, Query(query): Query<HomeQuery>) -> Result<Response, Error> {
    // Even the login form carries a token (against login CSRF), so a visitor gets a session.
    let csrf = session.csrf_token().await?;
    let Some(user) = session.user().await? else {
        let notice = query.signed_out.map(|_| "You have been logged out.");
        return Ok(page(StatusCode::OK, &login_form(notice, &csrf)));
    };
    // Served from the load `user()` just did: no second round trip.
    let name = session.get::<String>("name").await?.unwrap_or(user);
    let flash = session.take_flash::<String>("notice").await?;
    Ok(page(
        StatusCode::OK,
        &signed_in(&name, flash.as_deref(), &csrf),
    ))
}

async fn login(session: Session, Form(form): Form<LoginForm>) -> Result<Response, Error> {
    let name = form.user.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        let message = format!("Enter a name of 1 to {MAX_NAME_CHARS} characters, on one line.");
        let csrf = session.csrf_token().await?;
        return Ok(page(
            StatusCode::BAD_REQUEST,
            &login_form(Some(&message), &csrf),
        ));
    }
    // 403 unless the form came from a page of ours, in this browser.
    session.verify_csrf(&form.csrf).await?;
    // The user id feeds the per-user index behind "log out everywhere"; the display name is plain
    // session data. Here they are the same string; in a real app the id would be the account's.
    // `login` also gives the session a new id, so an id planted in the browser beforehand
    // (fixation) is worth nothing.
    session.login(name)?;
    session.insert("name", name)?;
    session.flash("notice", format!("Welcome, {name}!"))?;
    // 303 so that reloading the page that follows does not post the form again.
    Ok(Redirect::to("/").into_response())
}

/// Destroys the session and shows the login form with a fixed notice, carried in the URL: the
/// signed-in session is gone entirely, and the form's page starts an anonymous one for its token.
async fn logout(session: Session, Form(form): Form<CsrfForm>) -> Result<Response, Error> {
    session.verify_csrf(&form.csrf).await?;
    session.destroy();
    Ok(Redirect::to("/?signed-out").into_response())
}

/// Destroys every session of this user, on every device, this one included.
async fn logout_everywhere(
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Error> {
    session.verify_csrf(&form.csrf).await?;
    // `None` (not signed in) has nothing to end: the login form is the right page either way.
    session.destroy_everywhere().await?;
    Ok(Redirect::to("/?signed-out").into_response())
}

/// The user's sessions, each with a "Sign out" button.
async fn devices(session: Session) -> Result<Response, Error> {
    if session.user().await?.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    let csrf = session.csrf_token().await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64);
    let mut items = String::new();
    for device in session.devices().await? {
        let agent = device.user_agent.as_deref().unwrap_or("Unknown browser");
        let this = if device.current {
            " (this browser)"
        } else {
            ""
        };
        items.push_str(&format!(
            r#"<li class="device{current}"><span class="agent">{agent}</span>, last seen {ago} s ago{this}
  <form method="post" action="/devices/end">
    <input type="hidden" name="csrf" value="{csrf}">
    <input type="hidden" name="handle" value="{handle}">
    <button class="end" type="submit">Sign out</button>
  </form>
</li>
"#,
            current = if device.current { " current" } else { "" },
            agent = escape(agent),
            ago = (now - device.last_seen).max(0) / 1000,
            handle = escape(&device.handle),
        ));
    }
    Ok(page(
        StatusCode::OK,
        &format!(
            "<h2>Your devices</h2>\n<ul id=\"devices\">\n{items}</ul>\n<a href=\"/\">Back</a>"
        ),
    ))
}

/// Ends one of the user's sessions: this one is a logout.
async fn end_device(session: Session, Form(form): Form<EndDeviceForm>) -> Result<Response, Error> {
    session.verify_csrf(&form.csrf).await?;
    session.end_device(&form.handle).await?;
    Ok(match session.user().await? {
        Some(_) => Redirect::to("/devices"),
        None => Redirect::to("/?signed-out"),
    }
    .into_response())
}

fn login_form(notice: Option<&str>, csrf: &str) -> String {
    format!(
        r#"{notice}<form method="post" action="/login">
  <input type="hidden" name="csrf" value="{csrf}">
  <label for="user">Name</label>
  <input id="user" name="user" required maxlength="{MAX_NAME_CHARS}" autofocus>
  <button id="login" type="submit">Log in</button>
</form>"#,
        notice = notice.map(flash_html).unwrap_or_default(),
    )
}

fn signed_in(name: &str, flash: Option<&str>, csrf: &str) -> String {
    format!(
        r#"{flash}<p id="signed-in">Signed in as {name}</p>
<form method="post" action="/logout">
  <input type="hidden" name="csrf" value="{csrf}">
  <button id="logout" type="submit">Log out</button>
</form>
<form method="post" action="/logout-everywhere">
  <input type="hidden" name="csrf" value="{csrf}">
  <button id="logout-everywhere" type="submit">Log out everywhere</button>
</form>
<p><a id="devices-link" href="/devices">Your devices</a></p>"#,
        flash = flash.map(flash_html).unwrap_or_default(),
        name = escape(name),
    )
}

fn flash_html(text: &str) -> String {
    format!("<p id=\"flash\" role=\"status\">{}</p>\n", escape(text))
}

/// A whole HTML page around `body`.
fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Login example</title></head>\n\
         <body>\n<h1>Login example</h1>\n{body}\n</body>\n</html>\n"
    );
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        // The page shows who is signed in: after a logout, Back must not bring it from the cache.
        (header::CACHE_CONTROL, "no-store"),
    ];
    (status, headers, html).into_response()
}

/// Escapes text for HTML element content and quoted attributes: names and flash messages are user
/// input.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Resolves on Ctrl-C or on SIGTERM (what `docker stop` and Kubernetes send).
async fn shutdown() {
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[tokio::main]
async fn main() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let url = env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let secure = match env::var("COOKIE_SECURE").as_deref() {
        Err(_) | Ok("true") => true,
        Ok("false") => false,
        Ok(other) => return Err(format!("COOKIE_SECURE={other:?}: expected true or false")),
    };
    // Returns without waiting for Redis: until it answers, session pages get a 503.
    let store = RedisStore::connect(&url)
        .await
        .map_err(|e| format!("REDIS_URL: {e}"))?;
    let app = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/devices", get(devices))
        .route("/devices/end", post(end_device))
        .layer(SessionLayer::new(store).with_secure(secure))
        // No other site may frame these pages (clickjacking).
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        ));
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("ADDR {addr}: {e}"))?;
    tracing::info!("login example on http://{addr}/");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| e.to_string())
}

//! A cookie-keeping client that drives the demo's routes in process, and the app it drives.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use axum_redis_session::SessionLayer;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::demo;

/// A response, with the parts tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The `Set-Cookie` header, if the response has one.
    pub fn set_cookie(&self) -> Option<&str> {
        self.headers
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap())
    }
}

/// A browser-like client: keeps the session cookie the app sets and sends it back.
#[derive(Clone)]
pub struct Browser {
    app: Router,
    pub cookie: Option<String>,
    cookie_name: String,
    /// Sent as `User-Agent` with every request, when set.
    user_agent: Option<String>,
}

impl Browser {
    pub fn new(app: Router) -> Self {
        Self {
            app,
            cookie: None,
            cookie_name: "sid".into(),
            user_agent: None,
        }
    }

    pub fn with_cookie(app: Router, cookie: Option<String>) -> Self {
        Self {
            cookie,
            ..Self::new(app)
        }
    }

    /// This browser, keeping the cookie `name` (a foreign format's).
    pub fn with_cookie_name(self, name: &str) -> Self {
        Self {
            cookie_name: name.to_owned(),
            ..self
        }
    }

    /// This browser, sending `user_agent` as its `User-Agent`.
    pub fn with_user_agent(self, user_agent: &str) -> Self {
        Self {
            user_agent: Some(user_agent.to_owned()),
            ..self
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send("GET", path, "", None).await
    }

    /// Repeats `GET path` until it answers 200 (the store has come back), failing after `limit`;
    /// returns the reply and how long it took.
    pub async fn get_until_ok(
        &mut self,
        path: &str,
        limit: std::time::Duration,
    ) -> (Reply, std::time::Duration) {
        let started = std::time::Instant::now();
        loop {
            let reply = self.get(path).await;
            if reply.status == StatusCode::OK {
                return (reply, started.elapsed());
            }
            assert!(
                started.elapsed() < limit,
                "{path} did not recover within {limit:?}: {reply:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn put(&mut self, path: &str, body: &str) -> Reply {
        self.send("PUT", path, body, None).await
    }

    pub async fn delete(&mut self, path: &str) -> Reply {
        self.send("DELETE", path, "", None).await
    }

    pub async fn post_form(&mut self, path: &str, form: &str) -> Reply {
        self.send(
            "POST",
            path,
            form,
            Some("application/x-www-form-urlencoded"),
        )
        .await
    }

    /// A `POST` with this browser's cookie and extra headers, keeping nothing it answers.
    pub async fn post_with_headers(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = Request::post(path);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, format!("{}={cookie}", self.cookie_name));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        call(&self.app, request.body(Body::empty()).unwrap()).await
    }

    /// Sends a request with exactly these `Cookie` header values (raw bytes), keeping nothing.
    pub async fn send_raw_cookies(&self, path: &str, cookies: &[&[u8]]) -> Reply {
        let mut request = Request::get(path);
        for cookie in cookies {
            request = request.header(header::COOKIE, *cookie);
        }
        call(&self.app, request.body(Body::empty()).unwrap()).await
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
        content_type: Option<&str>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, format!("{}={cookie}", self.cookie_name));
        }
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(user_agent) = &self.user_agent {
            request = request.header(header::USER_AGENT, user_agent);
        }
        let reply = call(
            &self.app,
            request.body(Body::from(body.to_owned())).unwrap(),
        )
        .await;
        if let Some(set) = reply.set_cookie() {
            let parsed = cookie::Cookie::parse(set.to_owned()).unwrap();
            let removed = parsed.max_age() == Some(time::Duration::ZERO);
            self.cookie = (!removed).then(|| parsed.value().to_owned());
        }
        reply
    }
}

async fn call(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// How many requests `GET /test/csrf-together` waits for: each loads its session, then all ask for a
/// CSRF token at once, the worst interleaving of concurrent first uses.
pub const CSRF_TOGETHER: usize = 8;

/// The fields `PUT /test/many` sets, each to the request's body.
pub const MANY_FIELDS: [&str; 8] = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"];

/// The demo's routes under `layer`, plus test-only routes for behaviours the contract has no route
/// for: a handler that fails after writing, handlers that wait for a signal mid-request (a read then
/// a write, a blind write, a login that cycles the id), one request that sets several fields, two
/// that cycle the id without a login (one after reading the session's user), one that logs in and
/// answers a CSRF token, and one that answers a CSRF token once [`CSRF_TOGETHER`] requests have
/// loaded their sessions.
pub fn app(layer: SessionLayer, gate: Gate) -> Router {
    use axum::routing::{get, post, put};
    use axum_redis_session::Session;

    let fail = get(|session: Session| async move {
        session.insert("count", 1000_u64).unwrap();
        StatusCode::INTERNAL_SERVER_ERROR
    });
    let slow_read_write = slow_counter(gate.clone(), 0);
    // The same, writing more fields than the Redis store's lean update script takes.
    let slow_wide_write = slow_counter(gate.clone(), 64);
    let write_gate = gate.clone();
    let slow_write = put(move |session: Session, body: String| async move {
        write_gate.pass().await;
        session.insert("slow", body).unwrap();
        StatusCode::NO_CONTENT
    });
    let incr_gate = gate.clone();
    let slow_incr = post(move |session: Session| async move {
        session.get::<u64>("count").await?;
        incr_gate.pass().await;
        session.increment("count", 1).await.map(|n| n.to_string())
    });
    let login_fresh = post(|session: Session, body: String| async move {
        session.login_fresh(body)?;
        Ok::<_, axum_redis_session::Error>(StatusCode::NO_CONTENT)
    });
    let login_with_note = post(|session: Session, body: String| async move {
        session.login("alice")?;
        session.insert("note", body)?;
        Ok::<_, axum_redis_session::Error>(StatusCode::NO_CONTENT)
    });
    let login_then_csrf = post(|session: Session, user: String| async move {
        session.login(user)?;
        session.csrf_token().await
    });
    let together = Arc::new(tokio::sync::Barrier::new(CSRF_TOGETHER));
    let csrf_together = get(move |session: Session| async move {
        session.user().await?;
        together.wait().await;
        session.csrf_token().await
    });
    let logout_then_fail = post(|session: Session| async move {
        session.destroy();
        StatusCode::INTERNAL_SERVER_ERROR
    });
    let destroy_then_user = post(|session: Session| async move {
        session.user().await?;
        session.destroy();
        let user = session.user().await?;
        Ok::<_, axum_redis_session::Error>(user.unwrap_or_else(|| "none".to_owned()))
    });
    let login_gate = gate.clone();
    let slow_login = post(move |session: Session, user: String| async move {
        let user = user.trim_start_matches("user=").to_owned();
        login_gate.pass().await;
        session.login(user)?;
        Ok::<_, axum_redis_session::Error>(StatusCode::NO_CONTENT)
    });
    let cycle = post(|session: Session| async move {
        session.cycle_id();
        StatusCode::NO_CONTENT
    });
    let read_then_cycle = post(|session: Session| async move {
        session.user().await?;
        session.cycle_id();
        Ok::<_, axum_redis_session::Error>(StatusCode::NO_CONTENT)
    });
    // Several fields in one request, so that a half-applied save would show.
    let many = put(|session: Session, body: String| async move {
        for field in MANY_FIELDS {
            session.insert(field, &body).unwrap();
        }
        StatusCode::NO_CONTENT
    });
    let extra = Router::new()
        .merge(lock_routes(gate.clone()))
        .route("/test/fail", fail)
        .route("/test/slow-incr", slow_incr)
        .route("/test/login-fresh", login_fresh)
        .route("/test/login-with-note", login_with_note)
        .route("/test/login-then-csrf", login_then_csrf)
        .route("/test/csrf-together", csrf_together)
        .route("/test/logout-then-fail", logout_then_fail)
        .route("/test/destroy-then-user", destroy_then_user)
        .route("/test/slow-counter", slow_read_write)
        .route("/test/slow-wide", slow_wide_write)
        .route("/test/slow-put", slow_write)
        .route("/test/slow-login", slow_login)
        .route("/test/many", many)
        .route("/test/cycle", cycle)
        .route("/test/read-then-cycle", read_then_cycle)
        .merge(prefs_routes(gate.clone()))
        .layer(layer.clone());
    demo::app(layer).merge(extra)
}

/// `GET`: reads the count, waits at the gate, then writes the count plus one and `wide` more fields.
fn slow_counter(gate: Gate, wide: usize) -> axum::routing::MethodRouter {
    use axum::routing::get;
    use axum_redis_session::Session;

    get(move |session: Session| async move {
        let count = session
            .get::<u64>("count")
            .await
            .unwrap_or_default()
            .unwrap_or(0);
        gate.pass().await;
        session.insert("count", count + 1).unwrap();
        for i in 0..wide {
            session.insert(&format!("wide{i}"), i).unwrap();
        }
        (count + 1).to_string()
    })
}

/// `critical`'s value as the demo's `/critical` keeps it (text; 0 when absent).
async fn critical_of(
    session: &axum_redis_session::Session,
) -> Result<u64, axum_redis_session::Error> {
    let text = session.get::<String>("critical").await?;
    Ok(text.map_or(0, |text| text.parse().expect("critical holds a number")))
}

/// Critical sections held mid-request: `POST /test/lock-gate` takes the lock, reads `critical`,
/// waits at the gate, then writes it plus one; `POST /test/lock-panic` takes the lock, records a
/// change, waits at the gate, then panics; `POST /test/lock-frozen?ms=N` takes the lock, reads
/// `critical`, signals its arrival, then blocks its thread for N ms (a stalled process: on a
/// current-thread runtime, nothing renews the lock meanwhile) before writing it plus one.
fn lock_routes(gate: Gate) -> Router {
    use axum::routing::post;
    use axum_redis_session::{Error, Session};

    let held_gate = gate.clone();
    let panic_gate = gate.clone();
    Router::new()
        .route(
            "/test/lock-gate",
            post(move |session: Session| async move {
                let _lock = session.lock().await?;
                let value = critical_of(&session).await? + 1;
                held_gate.pass().await;
                session.insert("critical", value.to_string())?;
                Ok::<_, Error>(value.to_string())
            }),
        )
        .route(
            "/test/lock-panic",
            post(move |session: Session| async move {
                let _lock = session.lock().await?;
                session.insert("critical", "panicked")?;
                panic_gate.pass().await;
                panic!("the handler fails while it holds the lock");
                #[allow(unreachable_code)]
                Ok::<_, Error>(())
            }),
        )
        .route(
            "/test/lock-frozen",
            post(move |session: Session, uri: axum::http::Uri| async move {
                let ms: u64 = uri
                    .query()
                    .unwrap()
                    .strip_prefix("ms=")
                    .unwrap()
                    .parse()
                    .unwrap();
                let _lock = session.lock().await?;
                let value = critical_of(&session).await? + 1;
                gate.arrived.notify_one();
                std::thread::sleep(std::time::Duration::from_millis(ms));
                session.insert("critical", value.to_string())?;
                Ok::<_, Error>(value.to_string())
            }),
        )
}

/// A typed session's content in the tests: two fields that requests change independently.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Prefs {
    pub theme: String,
    pub items: Vec<String>,
}

/// `GET /test/prefs` (the `Prefs` as JSON), `PUT /test/prefs/items` (appends the body), and
/// `PUT /test/prefs/theme`, which reads the whole `Prefs`, waits at the gate, then sets the theme
/// from the body: a read-modify-write whose other fields are stale by the time it saves.
fn prefs_routes(gate: Gate) -> Router {
    use axum::routing::{get, post, put};
    use axum_redis_session::{Error, TypedSession};

    Router::new()
        .route(
            "/test/prefs",
            get(|prefs: TypedSession<Prefs>| async move {
                Ok::<_, Error>(axum::Json(prefs.get().await?))
            }),
        )
        .route(
            "/test/prefs/items",
            put(|prefs: TypedSession<Prefs>, item: String| async move {
                prefs.update(|p| p.items.push(item)).await?;
                Ok::<_, Error>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/test/prefs/theme",
            put(
                move |prefs: TypedSession<Prefs>, theme: String| async move {
                    let mut read = prefs.get().await?;
                    gate.pass().await;
                    read.theme = theme;
                    prefs.set(&read).await?;
                    Ok::<_, Error>(StatusCode::NO_CONTENT)
                },
            ),
        )
}

/// Lets a test hold a handler mid-request: the handler signals it has arrived, then waits to be let go.
#[derive(Clone, Default)]
pub struct Gate {
    arrived: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl Gate {
    async fn pass(&self) {
        self.arrived.notify_one();
        self.release.notified().await;
    }

    pub async fn wait_arrival(&self) {
        self.arrived.notified().await;
    }

    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// The demo's routes on `store`, with the layer shaped by `configure`.
pub async fn app_on(
    store: axum_redis_session::RedisStore,
    configure: impl FnOnce(SessionLayer) -> SessionLayer,
) -> (Router, Gate) {
    let gate = Gate::default();
    let layer = configure(SessionLayer::new(store));
    (app(layer, gate.clone()), gate)
}

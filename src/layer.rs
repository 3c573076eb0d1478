//! `SessionLayer`: the configuration a router is given, and its builder.

use std::fmt;
use std::sync::Arc;

use axum_core::response::Response;
use cookie::SameSite;
use time::Duration;
use tower_layer::Layer;

use crate::config::Config;
use crate::devices::ClientIp;
use crate::error::Error;
use crate::hooks::{Hooks, SessionEvent};
use crate::metrics::Metrics;
use crate::service::SessionService;
use crate::shared::Shared;
use crate::store::Backend;

/// Adds a [`Session`](crate::Session) to every request and saves what handlers change.
///
/// Settings are checked when the layer is applied to a router: an unsafe or contradictory
/// combination panics there, at start-up, naming the option. Call [`validate`](Self::validate) to
/// get that check as a `Result` instead.
///
/// # Examples
///
/// ```
/// use axum::{routing::get, Router};
/// use axum_redis_session::{MemoryStore, SessionLayer};
/// use time::Duration;
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(SessionLayer::new(MemoryStore::default()).with_idle_timeout(Duration::minutes(30)));
/// ```
#[derive(Clone)]
#[must_use]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("store", &self.shared.store)
            .field("config", &self.shared.config)
            .field("error_handler", &self.shared.error_handler.is_some())
            .field("hook", &self.shared.hooks.is_some())
            .finish()
    }
}

impl SessionLayer {
    /// A layer keeping sessions in `store`, with the secure defaults listed on each setter.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// ```
    pub fn new(store: impl Into<Backend>) -> Self {
        let store = store.into();
        let metrics = Metrics::with_near_cache(store.near_cache_gauges());
        let mut config = Config::default();
        if let Backend::Foreign(foreign) = &store {
            let format = foreign.format();
            config.cookie_name = format.cookie_name().to_owned();
            config.format = Some(Arc::clone(format));
        }
        Self {
            shared: Arc::new(Shared {
                store,
                config: Arc::new(config),
                error_handler: None,
                metrics,
                hooks: None,
            }),
        }
    }

    fn config(mut self, change: impl FnOnce(&mut Config)) -> Self {
        let shared = Arc::make_mut(&mut self.shared);
        change(Arc::make_mut(&mut shared.config));
        self
    }

    /// The cookie's name. Default: `sid`, or the framework's own with a foreign format
    /// ([`RedisStore::with_format`](crate::RedisStore::with_format)). A `__Host-` name requires Secure, Path `/` and no Domain.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_cookie_name("__Host-sid");
    /// ```
    pub fn with_cookie_name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.config(|c| c.cookie_name = name)
    }

    /// How long a session lives without requests; any request that loads it rolls this forward
    /// (throttled: the TTL is rewritten only once a tenth of it has passed). Default: 120 minutes.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_idle_timeout(time::Duration::minutes(30));
    /// ```
    pub fn with_idle_timeout(self, timeout: Duration) -> Self {
        self.config(|c| c.limits.idle_timeout = timeout)
    }

    /// A hard limit on a session's life from its creation, whatever its activity, enforced by the
    /// store. Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_absolute_timeout(time::Duration::hours(12));
    /// ```
    pub fn with_absolute_timeout(self, timeout: Duration) -> Self {
        self.config(|c| c.limits.absolute_timeout = Some(timeout))
    }

    /// Gives the cookie a `Max-Age` equal to the session's remaining life, renewed whenever the
    /// store rolls its TTL, so it survives a browser restart ("remember me"). Default: off, a
    /// browser-session cookie.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_persistent_cookie(true);
    /// ```
    pub fn with_persistent_cookie(self, persistent: bool) -> Self {
        self.config(|c| c.persistent = persistent)
    }

    /// The cookie's `Secure` attribute. Default: `true`.
    ///
    /// # Security
    ///
    /// Without it the browser sends the session id over plain http, where anyone on the path can
    /// take it. Turn it off only for local development over http.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_secure(cfg!(not(debug_assertions)));
    /// ```
    pub fn with_secure(self, secure: bool) -> Self {
        self.config(|c| c.secure = secure)
    }

    /// The cookie's `SameSite` attribute. Default: `Lax`. `None` requires Secure.
    ///
    /// # Security
    ///
    /// `None` sends the cookie on cross-site requests, which exposes state-changing routes to CSRF
    /// unless they are protected otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum_redis_session::SameSite;
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_same_site(SameSite::Strict);
    /// ```
    pub fn with_same_site(self, same_site: SameSite) -> Self {
        self.config(|c| c.same_site = same_site)
    }

    /// The cookie's `Domain` attribute. Default: none (the cookie goes back to this host only).
    ///
    /// # Security
    ///
    /// A domain makes every subdomain receive the session id.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_domain("example.com");
    /// ```
    pub fn with_domain(self, domain: impl Into<String>) -> Self {
        let domain = domain.into();
        self.config(|c| c.domain = Some(domain))
    }

    /// The cookie's `Path` attribute. Default: `/`.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_path("/app");
    /// ```
    pub fn with_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.config(|c| c.path = path)
    }

    /// The largest a session may grow, in bytes of field names and values. A change that would
    /// grow it past this is refused whole with [`Error::TooLarge`] (413). Default: 65 536.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_max_bytes(16 * 1024);
    /// ```
    pub fn with_max_bytes(self, max_bytes: usize) -> Self {
        self.config(|c| c.limits.max_bytes = max_bytes)
    }

    /// The most sessions one user may have at once: at a login, the user's sessions beyond this,
    /// those that expire first, are destroyed (like Spring Session's maximum sessions). Default:
    /// no limit.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_max_sessions_per_user(5);
    /// ```
    pub fn with_max_sessions_per_user(self, max: u32) -> Self {
        self.config(|c| c.limits.max_sessions_per_user = Some(max))
    }

    /// Whether changes are saved when the handler answers with a 5xx status. Default: `false`, so
    /// a failed request leaves the session as it was.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_save_on_server_error(true);
    /// ```
    pub fn with_save_on_server_error(self, save: bool) -> Self {
        self.config(|c| c.save_on_server_error = save)
    }

    /// Whether the store keys sessions by the SHA-256 of the cookie's token (default: `true`) or by
    /// the token itself.
    ///
    /// # Security
    ///
    /// With `false`, anyone who can read Redis (a dump, `MONITOR`, a replica, a backup) holds live
    /// session tokens. Only for legacy readers that look sessions up by the raw cookie value.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_hashed_key_ids(true);
    /// ```
    pub fn with_hashed_key_ids(self, hashed: bool) -> Self {
        self.config(|c| c.hash_ids = hashed)
    }

    /// Where a login finds its client's IP, which the device list then shows
    /// ([`Session::devices`](crate::Session::devices)). Default: no IP is recorded; the
    /// `User-Agent` always is.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum_redis_session::ClientIp;
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// // Serve the router with `into_make_service_with_connect_info::<std::net::SocketAddr>()`.
    /// let layer = layer.with_client_ip(ClientIp::Socket);
    /// ```
    pub fn with_client_ip(self, source: ClientIp) -> Self {
        self.config(|c| c.client_ip = Some(source))
    }

    /// The longest [`Session::lock`](crate::Session::lock) waits while another request holds the
    /// session's lock, before it fails with [`Error::LockBusy`] (409). `Duration::ZERO` tries once.
    /// Default: 5 seconds.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_lock_wait(time::Duration::seconds(2));
    /// ```
    pub fn with_lock_wait(self, wait: Duration) -> Self {
        self.config(|c| c.lock.wait = wait)
    }

    /// How long a session's lock lives unless renewed. Its holder renews it three times per this
    /// while the guard lives, so it stays held however long the critical section runs; it frees
    /// itself this long after a holder died (or stalled). Between 100 ms and an hour. Default:
    /// 3 seconds.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_lock_ttl(time::Duration::seconds(10));
    /// ```
    pub fn with_lock_ttl(self, ttl: Duration) -> Self {
        self.config(|c| c.lock.ttl = ttl)
    }

    /// Shapes the response for every session error: those handlers return and those the layer
    /// produces when a save fails. Default: the status of [`Error::status`] with a short plain body.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::response::IntoResponse;
    /// # let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let layer = layer.with_error_handler(|error| {
    ///     (error.status(), axum::Json(serde_json::json!({ "error": error.status().as_u16() }))).into_response()
    /// });
    /// ```
    pub fn with_error_handler(
        mut self,
        handler: impl Fn(&Error) -> Response + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.shared).error_handler = Some(Arc::new(handler));
        self
    }

    /// Calls `hook` with each [`SessionEvent`] (created, login, cycle, destroy, destroy-everywhere,
    /// revoke) once the store has done it, for an audit log. Default: none, at no cost.
    ///
    /// The hook runs on a thread of its own, one event at a time, in the order the events
    /// happened; requests hand it their events through a queue of 1024 and never wait for it. When
    /// the queue is full, an event is dropped and counted
    /// ([`MetricsSnapshot::hook_events_dropped`](crate::MetricsSnapshot::hook_events_dropped),
    /// `session_hook_events_dropped_total`). A panic in the hook is caught and logged; the next
    /// event gets the hook again. Being called from one thread, it may keep state of its own (`FnMut`).
    ///
    /// # Examples
    ///
    /// ```
    /// use axum_redis_session::{MemoryStore, SessionEvent, SessionLayer};
    ///
    /// let layer = SessionLayer::new(MemoryStore::default()).with_hook(|event: &SessionEvent| {
    ///     let user = event.user.as_deref();
    ///     tracing::info!(kind = ?event.kind, session = event.key.as_str(), user, "audit");
    /// });
    /// ```
    pub fn with_hook(mut self, hook: impl FnMut(&SessionEvent) + Send + 'static) -> Self {
        Arc::make_mut(&mut self.shared).hooks = Some(Hooks::start(hook));
        self
    }

    /// The counters of this layer (loads, touches, saves, errors), shared by every service it builds.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default());
    /// let metrics = layer.metrics();
    /// // serve `metrics.to_prometheus()` from a route of your own
    /// ```
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics.clone()
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Takes over the sessions of a tower-sessions app on the same Redis: a browser that carries
    /// tower-sessions' cookie and none of ours keeps its session, moved into our layout under a
    /// new id on its first request (three round trips, once), after which the old record is
    /// deleted and its cookie removed. Needs the `tower-sessions` feature and the Redis store;
    /// anything else is [`Error::Config`] naming `tower_sessions_migration` at
    /// [`validate`](Self::validate). See the migration guide.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use axum_redis_session::{RedisStore, SessionLayer, TowerSessionsMigration};
    ///
    /// # async fn run() -> Result<(), axum_redis_session::Error> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let layer = SessionLayer::new(store)
    ///     .with_tower_sessions_migration(TowerSessionsMigration::new().with_user_field("user_id"));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tower-sessions")]
    pub fn with_tower_sessions_migration(
        self,
        migration: crate::migrate::TowerSessionsMigration,
    ) -> Self {
        self.config(|c| c.migration = Some(Arc::new(migration)))
    }

    /// Checks the settings, naming the first invalid option.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum_redis_session::{MemoryStore, SameSite, SessionLayer};
    ///
    /// let layer = SessionLayer::new(MemoryStore::default())
    ///     .with_same_site(SameSite::None)
    ///     .with_secure(false);
    /// assert!(layer.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        self.shared.config.validate()?;
        #[cfg(feature = "tower-sessions")]
        if let Some(migration) = &self.shared.config.migration {
            migration.validate(&self.shared.store)?;
        }
        match &self.shared.store {
            Backend::Redis(store) => store.validate(),
            Backend::Memory(_) => Ok(()),
            Backend::Foreign(store) => store.validate(),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        if let Err(error) = self.validate() {
            panic!("SessionLayer: {error}");
        }
        SessionService::new(inner, Arc::clone(&self.shared))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[test]
    #[should_panic(expected = "invalid session setting `same_site`")]
    fn applying_an_invalid_layer_panics_naming_the_option() {
        let layer = SessionLayer::new(MemoryStore::default())
            .with_same_site(SameSite::None)
            .with_secure(false);
        let _ = layer.layer(tower::service_fn(|()| async {
            Ok::<_, std::convert::Infallible>(())
        }));
    }

    #[test]
    fn builder_setters_reach_the_shared_config() {
        let layer = SessionLayer::new(MemoryStore::default())
            .with_cookie_name("app")
            .with_idle_timeout(Duration::minutes(5))
            .with_max_bytes(10);
        let config = &layer.shared.config;
        assert_eq!(
            (
                config.cookie_name.as_str(),
                config.limits.idle_timeout,
                config.limits.max_bytes
            ),
            ("app", Duration::minutes(5), 10)
        );
        assert!(layer.validate().is_ok());
    }
}

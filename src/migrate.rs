//! Moving from tower-sessions without logging anybody out (INTEROP.md §4): a request that carries
//! tower-sessions' cookie and no session cookie of ours has the record it names read once, and its
//! data becomes that request's changes, so that the request's end creates the session in our
//! layout, under a new id and our cookie. Then the record is deleted and its cookie removed, so
//! that a later logout is not undone by the old cookie. Three round trips, once per browser.

use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

use crate::error::Error;
use crate::store::Backend;

/// A tower-sessions cookie this request has looked at: once the request's end is stored, the
/// record it names (if this request took one over) is deleted and the cookie removed, so that the
/// browser is not sent here again.
#[derive(Debug)]
#[cfg_attr(not(feature = "tower-sessions"), allow(dead_code))]
pub(crate) struct Legacy {
    /// The key of the record taken over; `None` when there was no live one.
    key: Option<String>,
    cookie_name: String,
}

impl Legacy {
    /// Deletes the record taken over, whatever it holds now: the session lives on in our layout.
    pub(crate) async fn forget(&self, store: &Backend) -> Result<(), Error> {
        match (&self.key, store) {
            (Some(key), Backend::Redis(store)) => {
                let take = crate::store::ForeignWrite::Take;
                store.foreign_write(key.clone(), None, take).await?;
                Ok(())
            }
            // Nothing was taken over, or (never: the layer's `validate`) not on Redis.
            _ => Ok(()),
        }
    }

    /// Tells the browser to drop tower-sessions' cookie, at tower-sessions' default path.
    pub(crate) fn expire_cookie(&self, headers: &mut HeaderMap) {
        let removal = format!("{}=; Path=/; Max-Age=0", self.cookie_name);
        if let Ok(value) = HeaderValue::try_from(removal) {
            headers.append(SET_COOKIE, value);
            // As for our own cookie: a response that changes a session cookie is never cached.
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
}

#[cfg(feature = "tower-sessions")]
pub(crate) use self::tower_sessions::take_over;
#[cfg(feature = "tower-sessions")]
pub use self::tower_sessions::TowerSessionsMigration;

/// Without the `tower-sessions` feature there is nothing to take over.
#[cfg(not(feature = "tower-sessions"))]
pub(crate) fn take_over<B>(
    _: &crate::shared::Shared,
    _: &http::Request<B>,
    _: &crate::session::Session,
) -> Option<impl std::future::Future<Output = Result<Legacy, Error>> + Send + 'static> {
    None::<std::future::Ready<Result<Legacy, Error>>>
}

#[cfg(feature = "tower-sessions")]
mod tower_sessions {
    use std::future::Future;
    use std::sync::Arc;

    use time::OffsetDateTime;

    use super::Legacy;
    use crate::cookie::SessionCookie;
    use crate::error::Error;
    use crate::session::Session;
    use crate::shared::Shared;
    use crate::store::format::tower_sessions::{is_session_id, parse_record};
    use crate::store::{Backend, RESERVED_PREFIX};

    /// Where a tower-sessions app kept its sessions, for
    /// [`SessionLayer::with_tower_sessions_migration`](crate::SessionLayer::with_tower_sessions_migration):
    /// a browser that still carries tower-sessions' cookie (and none of ours) keeps its session,
    /// which continues in our layout under a new id. Needs the `tower-sessions` feature and the
    /// Redis store, on the Redis the tower-sessions app used.
    ///
    /// The defaults are tower-sessions 0.15's with `tower-sessions-redis-store`: the cookie `id`,
    /// keys with no prefix, no user bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum_redis_session::TowerSessionsMigration;
    ///
    /// // The old app kept the signed-in user's id in its session under "user_id".
    /// let migration = TowerSessionsMigration::new().with_user_field("user_id");
    /// # let _ = migration;
    /// ```
    #[derive(Debug, Clone)]
    pub struct TowerSessionsMigration {
        cookie_name: String,
        key_prefix: String,
        user_field: Option<String>,
    }

    impl Default for TowerSessionsMigration {
        fn default() -> Self {
            Self {
                cookie_name: "id".to_owned(),
                key_prefix: String::new(),
                user_field: None,
            }
        }
    }

    impl TowerSessionsMigration {
        /// tower-sessions' defaults: the cookie `id`, keys with no prefix, no user bound.
        ///
        /// # Examples
        ///
        /// ```
        /// let migration = axum_redis_session::TowerSessionsMigration::new();
        /// # let _ = migration;
        /// ```
        pub fn new() -> Self {
            Self::default()
        }

        /// The name of tower-sessions' cookie (`SessionManagerLayer::with_name`). Default `id`.
        ///
        /// # Examples
        ///
        /// ```
        /// let migration = axum_redis_session::TowerSessionsMigration::new().with_cookie_name("app.sid");
        /// # let _ = migration;
        /// ```
        #[must_use]
        pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
            self.cookie_name = name.into();
            self
        }

        /// The prefix of tower-sessions' keys (`RedisStore::with_prefix` in
        /// `tower-sessions-redis-store`). Default: none.
        ///
        /// # Examples
        ///
        /// ```
        /// let migration = axum_redis_session::TowerSessionsMigration::new().with_key_prefix("ts:");
        /// # let _ = migration;
        /// ```
        #[must_use]
        pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
            self.key_prefix = prefix.into();
            self
        }

        /// The field of the old session that held the signed-in user: a non-empty string or an
        /// integer there binds the session to that user, as [`Session::login`] would (without a
        /// second new id: the session gets one anyway). The field itself is kept too.
        ///
        /// # Examples
        ///
        /// ```
        /// let migration = axum_redis_session::TowerSessionsMigration::new().with_user_field("user_id");
        /// # let _ = migration;
        /// ```
        #[must_use]
        pub fn with_user_field(mut self, field: impl Into<String>) -> Self {
            self.user_field = Some(field.into());
            self
        }

        pub(crate) fn validate(&self, store: &Backend) -> Result<(), Error> {
            let invalid = |reason| Error::Config {
                option: "tower_sessions_migration",
                reason,
            };
            if !matches!(store, Backend::Redis(_)) {
                return Err(invalid(
                    "needs the Redis store, on the Redis tower-sessions used",
                ));
            }
            if self.cookie_name.is_empty() {
                return Err(invalid("the cookie name must not be empty"));
            }
            Ok(())
        }
    }

    /// If the layer migrates from tower-sessions and the request carries its cookie with a
    /// well-formed id but no session cookie of ours that reads, the step that reads the record and
    /// makes its data the session's changes. Its `Legacy` names the record to delete and the
    /// cookie to remove once the request's end is stored.
    pub(crate) fn take_over<B>(
        shared: &Shared,
        request: &http::Request<B>,
        session: &Session,
    ) -> Option<impl Future<Output = Result<Legacy, Error>> + Send + 'static> {
        let migration = shared.config.migration.as_ref()?;
        let config = &shared.config;
        let ours = SessionCookie::find(request.headers(), &config.cookie_name).value();
        if ours.and_then(|value| config.read_cookie(value)).is_some() {
            return None;
        }
        let id = SessionCookie::find(request.headers(), &migration.cookie_name).value()?;
        if !is_session_id(id) {
            return None;
        }
        let Backend::Redis(store) = &shared.store else {
            return None;
        };
        let key = format!("{}{id}", migration.key_prefix);
        let (store, migration, session) = (store.clone(), Arc::clone(migration), session.clone());
        Some(async move {
            let mut legacy = Legacy {
                key: None,
                cookie_name: migration.cookie_name.clone(),
            };
            let Some((bytes, _)) = store.foreign_read(key.clone()).await? else {
                return Ok(legacy);
            };
            let Some(record) = parse_record(&bytes) else {
                // Without the value: it may hold anything.
                tracing::warn!(
                    cookie = migration.cookie_name,
                    "tower-sessions record does not parse; the request starts a new session"
                );
                return Ok(legacy);
            };
            if record.expires_at <= OffsetDateTime::now_utc() {
                return Ok(legacy);
            }
            let user = migration
                .user_field
                .as_ref()
                .and_then(|field| record.data.get(field))
                .and_then(|value| match value {
                    serde_json::Value::String(user) if !user.is_empty() => Some(user.clone()),
                    serde_json::Value::Number(id) if id.is_i64() || id.is_u64() => {
                        Some(id.to_string())
                    }
                    _ => None,
                });
            // Our reserved names cannot be user fields; tower-sessions had none of ours.
            let fields = record
                .data
                .into_iter()
                .filter(|(name, _)| !name.starts_with(RESERVED_PREFIX))
                .map(|(name, value)| (name, value.to_string()));
            session.adopt(fields, user);
            tracing::debug!("tower-sessions session taken over; it is saved under a new id");
            legacy.key = Some(key);
            Ok(legacy)
        })
    }
}

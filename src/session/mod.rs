//! The session handle that handlers use. Reads are `async` (the first one loads); writes are plain
//! calls that only record, so a forgotten `.await` can never drop a logout. What they record lives
//! in `state`; `commit` turns it into the store write once the handler is done.

mod commit;
mod lock;
mod state;

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Span;

use crate::devices::Client;
use crate::error::{CorruptValue, Error};
use crate::hooks::{SessionEvent, SessionEventKind};
use crate::id::Token;
use crate::metrics::{Event, Op};
use crate::shared::Shared;
use crate::store::{Changes, Incremented, FLASH_PREFIX, RESERVED_PREFIX};
use state::{Ending, Intent, State};

pub(crate) use commit::commit;
pub use lock::SessionLock;

/// The current request's session, handed to handlers by its extractor.
///
/// It is a cheap handle: clones share one state. The first read loads the session from the store
/// (one round trip, which also rolls its idle timeout); later reads are served from memory. Writes
/// are recorded and saved in one atomic round trip after the handler returns, and only the keys
/// that changed are written, so concurrent requests that change different keys both keep theirs.
///
/// # Examples
///
/// ```
/// use axum_redis_session::{Error, Session};
///
/// async fn counter(session: Session) -> Result<String, Error> {
///     let n: u64 = session.get("count").await?.unwrap_or(0);
///     session.insert("count", n + 1)?;
///     Ok((n + 1).to_string())
/// }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<State>,
}

impl fmt::Debug for Session {
    // Never prints the token or the session's data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id_prefix", &self.id_prefix())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        cookie: Option<&str>,
        had_cookie: bool,
        client: Client,
        span: Span,
    ) -> Self {
        Self {
            inner: Arc::new(State::new(shared, cookie, had_cookie, client, span)),
        }
    }

    /// Reads the value stored under `key`, or `None`.
    ///
    /// A value that does not deserialize as `T` is [`Error::Corrupt`] for this read only.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn handler(session: axum_redis_session::Session) -> Result<(), axum_redis_session::Error> {
    /// let cart: Vec<String> = session.get("cart").await?.unwrap_or_default();
    /// # Ok(()) }
    /// ```
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        check_user_key(key)?;
        self.read_field(key)
            .await?
            .map(|json| decode(key, &json))
            .transpose()
    }

    /// Stores `value` under `key`, replacing what was there. Saved when the request ends.
    ///
    /// Keys starting with `$` are reserved for the crate ([`Error::ReservedKey`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn handler(session: axum_redis_session::Session) -> Result<(), axum_redis_session::Error> {
    /// session.insert("theme", "dark")?;
    /// # Ok(()) }
    /// ```
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), Error> {
        check_user_key(key)?;
        self.write_field(key, &value)
    }

    /// Removes `key`. Saved when the request ends; needs no read of the session.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn handler(session: axum_redis_session::Session) -> Result<(), axum_redis_session::Error> {
    /// session.remove("cart")?;
    /// # Ok(()) }
    /// ```
    pub fn remove(&self, key: &str) -> Result<(), Error> {
        check_user_key(key)?;
        self.write_json(key.to_owned(), None);
        Ok(())
    }

    /// Adds `by` to the integer stored under `key` (an absent key counts as 0) and returns the new
    /// value. Applied by the store itself, at once, in one round trip and without loading the
    /// session: concurrent increments of one session all count, where a `get` then `insert` would
    /// lose some. It never brings back a session that was destroyed meanwhile ([`Error::Ended`] if
    /// this request had read it); on a request without a session it starts one, saved at the end.
    /// A value that is not an integer is [`Error::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn handler(session: axum_redis_session::Session) -> Result<String, axum_redis_session::Error> {
    /// let views = session.increment("views", 1).await?;
    /// # Ok(views.to_string()) }
    /// ```
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64, Error> {
        check_user_key(key)?;
        let stored = {
            let pending = self.inner.pending();
            let recorded = pending.changes.clear
                || pending.changes.fields.contains_key(key)
                || matches!(pending.intent, Intent::Destroy | Intent::Destroyed);
            match (recorded, self.inner.incoming(), self.inner.loaded()) {
                (false, Some((_, id)), None | Some(Some(_))) => Some(id.clone()),
                _ => None,
            }
        };
        let Some(id) = stored else {
            // Nothing stored to add to: a change of this request's, or a session yet to create.
            return self.increment_recorded(key, by).await;
        };
        let shared = &self.inner.shared;
        let limits = &shared.config.limits;
        let increment = shared.store.increment(&id, key, by, limits);
        let result = shared
            .metrics
            .observe(Op::Increment, Some(id.log_prefix()), increment, |result| {
                matches!(result, Incremented::To(_))
                    .then_some((Event::Update, "session counter incremented"))
            })
            .await?;
        match result {
            Incremented::To(value) => {
                self.inner
                    .pending()
                    .applied
                    .insert(key.to_owned(), value.to_string());
                Ok(value)
            }
            Incremented::Gone if self.inner.loaded().is_some() => Err(Error::Ended),
            // The cookie's id is unknown here: like a blind write, it starts a new session.
            Incremented::Gone => {
                self.inner.mark_missing();
                self.increment_recorded(key, by).await
            }
            Incremented::NotInteger(_) => Err(not_an_integer(key)),
            Incremented::TooLarge => Err(Error::TooLarge {
                limit: limits.max_bytes,
            }),
        }
    }

    /// An increment recorded as a change, for a value that is not in the store yet.
    async fn increment_recorded(&self, key: &str, by: i64) -> Result<i64, Error> {
        let current = match self.read_field(key).await? {
            Some(json) => json.parse::<i64>().map_err(|_| not_an_integer(key))?,
            None => 0,
        };
        let value = current.checked_add(by).ok_or_else(|| not_an_integer(key))?;
        self.write_json(key.to_owned(), Some(value.to_string()));
        Ok(value)
    }

    /// Removes every key (and pending flash value), keeping the session, its id and its user.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn handler(session: axum_redis_session::Session) {
    /// session.clear();
    /// # }
    /// ```
    pub fn clear(&self) {
        let mut pending = self.inner.pending();
        pending.changes.clear = true;
        pending.changes.fields.clear();
    }

    /// Stores a flash value: readable once, by [`take_flash`](Self::take_flash) on a later request.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn handler(session: axum_redis_session::Session) -> Result<(), axum_redis_session::Error> {
    /// session.flash("notice", "Saved.")?;
    /// # Ok(()) }
    /// ```
    pub fn flash<T: Serialize>(&self, key: &str, value: T) -> Result<(), Error> {
        self.write_field(&format!("{FLASH_PREFIX}{key}"), &value)
    }

    /// Reads a flash value and removes it, so it is seen once.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn handler(session: axum_redis_session::Session) -> Result<(), axum_redis_session::Error> {
    /// if let Some(notice) = session.take_flash::<String>("notice").await? {
    ///     println!("{notice}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn take_flash<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let field = format!("{FLASH_PREFIX}{key}");
        let Some(json) = self.read_field(&field).await? else {
            return Ok(None);
        };
        self.write_json(field, None);
        decode(key, &json).map(Some)
    }

    /// The user this session is bound to, if any (see [`login`](Self::login)); `None` once the
    /// session is destroyed in this request.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn handler(session: axum_redis_session::Session) -> Result<(), axum_redis_session::Error> {
    /// let signed_in = session.user().await?.is_some();
    /// # Ok(()) }
    /// ```
    pub async fn user(&self) -> Result<Option<String>, Error> {
        {
            let pending = self.inner.pending();
            if pending.changes.user.is_some()
                || matches!(pending.intent, Intent::Destroy | Intent::Destroyed)
            {
                return Ok(pending.changes.user.clone());
            }
        }
        Ok(self
            .inner
            .load()
            .await?
            .and_then(|loaded| loaded.user.clone()))
    }

    /// Logs `user` in: binds the session to the user (so
    /// [`destroy_everywhere`](Self::destroy_everywhere) finds it) and moves it to a fresh id at the
    /// end of the request, against session fixation. What the session held before is kept (a cart
    /// filled before signing in); [`login_fresh`](Self::login_fresh) drops it. There is no way to
    /// bind a user without the new id. An empty `user` is [`Error::EmptyUser`] (400), and nothing
    /// is recorded.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn login(session: axum_redis_session::Session) -> Result<(), axum_redis_session::Error> {
    /// // after checking the credentials:
    /// session.login("alice")?;
    /// # Ok(()) }
    /// ```
    pub fn login(&self, user: impl Into<String>) -> Result<(), Error> {
        let user = user.into();
        if user.is_empty() {
            return Err(Error::EmptyUser);
        }
        let mut pending = self.inner.pending();
        self.bind(&mut pending.changes, user);
        if pending.intent == Intent::Keep {
            pending.intent = Intent::Cycle;
        }
        Ok(())
    }

    /// Like [`login`](Self::login), but the session starts empty: nothing recorded before the login
    /// (by this request or earlier ones) is carried over. An empty `user` is
    /// [`Error::EmptyUser`], and nothing is recorded, the clear included.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn login(session: axum_redis_session::Session) -> Result<(), axum_redis_session::Error> {
    /// session.login_fresh("alice")?;
    /// # Ok(()) }
    /// ```
    pub fn login_fresh(&self, user: impl Into<String>) -> Result<(), Error> {
        let user = user.into();
        if user.is_empty() {
            return Err(Error::EmptyUser);
        }
        self.clear();
        self.login(user)
    }

    /// Moves the session to a fresh id at the end of the request; the old id stops working at once.
    /// Do this on login and on any change of privilege, against session fixation.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn login(session: axum_redis_session::Session) {
    /// session.cycle_id();
    /// # }
    /// ```
    pub fn cycle_id(&self) {
        let mut pending = self.inner.pending();
        if pending.intent == Intent::Keep {
            pending.intent = Intent::Cycle;
        }
    }

    /// Deletes the session at the end of the request and removes its cookie. Reads afterwards see
    /// an empty session; values inserted afterwards start a new session with a new id.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn logout(session: axum_redis_session::Session) {
    /// session.destroy();
    /// # }
    /// ```
    pub fn destroy(&self) {
        let mut pending = self.inner.pending();
        if pending.intent != Intent::Destroyed {
            pending.intent = Intent::Destroy;
        }
        pending.changes = Changes {
            clear: true,
            ..Changes::default()
        };
    }

    /// Deletes every session of this session's user now, this one included ("log out everywhere").
    /// Returns the user, or `None` (and deletes nothing) when the session is bound to no user.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn handler(session: axum_redis_session::Session) -> Result<(), axum_redis_session::Error> {
    /// if session.destroy_everywhere().await?.is_none() {
    ///     // not logged in
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn destroy_everywhere(&self) -> Result<Option<String>, Error> {
        let Some(user) = self.user().await? else {
            return Ok(None);
        };
        let store = &self.inner.shared.store;
        let Some((_, current)) = self.inner.incoming() else {
            return Ok(None);
        };
        let destroy = store.destroy_user(&user, current, &self.inner.shared.config.limits);
        let key = Some(current.log_prefix());
        self.inner
            .shared
            .metrics
            .observe(Op::DestroyEverywhere, key, destroy, |()| {
                Some((Event::Destroy, "destroyed every session of the user"))
            })
            .await?;
        let kind = SessionEventKind::DestroyEverywhere;
        self.inner
            .shared
            .notify(|| SessionEvent::new(kind, current.log_prefix(), None, Some(&user)));
        self.destroyed();
        Ok(Some(user))
    }

    /// Takes the session's lock, for a critical section: a read-modify-write across several keys,
    /// a step that must run once. While the returned guard holds it, other requests of this
    /// session that call `lock` wait, up to the layer's
    /// [`with_lock_wait`](crate::SessionLayer::with_lock_wait) (5 s by default), then fail with
    /// [`Error::LockBusy`] (409). Requests that do not call it never wait, and are not held back
    /// by it: the lock is advisory, between lockers.
    ///
    /// The lock is in the store, with a TTL
    /// ([`with_lock_ttl`](crate::SessionLayer::with_lock_ttl)) that is renewed while the guard
    /// lives, so it frees itself only when its holder died; and with a fencing token, so that a
    /// holder that stalled past its TTL cannot overwrite the next holder's work: this request's
    /// save is then refused with [`Error::LockLost`] (409). Read the session after taking the
    /// lock, not before: what the previous holder wrote is saved by then. See [`SessionLock`] for
    /// when it is released. A second call while a guard of this request lives shares its lock. On
    /// a request with no stored session yet there is nothing to share, and the guard comes at once.
    ///
    /// Increments ([`increment`](Self::increment)) and a login or logout under the lock are
    /// applied as always, without the fencing check.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn handler(session: axum_redis_session::Session) -> Result<(), axum_redis_session::Error> {
    /// let _lock = session.lock().await?;
    /// let step: u32 = session.get("wizard_step").await?.unwrap_or(0);
    /// session.insert("wizard_step", step + 1)?;
    /// session.insert("answers_complete", step + 1 >= 3)?;
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self) -> Result<SessionLock, Error> {
        lock::lock(self).await
    }

    /// Releases the session's lock if the request took it; the end of the request, after its save.
    pub(crate) async fn release_lock(&self) {
        self.inner.release_lock().await;
    }

    /// A short prefix of the store-side key id, safe to log; `None` when the request carried no
    /// session cookie. It is never the token itself.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn handler(session: axum_redis_session::Session) {
    /// tracing::info!(session = session.id_prefix(), "checkout");
    /// # }
    /// ```
    pub fn id_prefix(&self) -> Option<&str> {
        self.inner.incoming().map(|(_, key)| key.log_prefix())
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The key id of the session the request's cookie names, if it named one.
    pub(crate) fn key_id(&self) -> Option<&crate::id::KeyId> {
        self.inner.incoming().map(|(_, key)| key)
    }

    /// Records that the session was deleted from the store already: the end of the request only
    /// removes its cookie.
    pub(crate) fn destroyed(&self) {
        self.destroy();
        self.inner.pending().intent = Intent::Destroyed;
    }

    /// Starts the request from another session's data (a tower-sessions session taken over): its
    /// fields, and the user it was bound to, become this request's changes, so that its end
    /// creates the session under a new id.
    #[cfg_attr(not(feature = "tower-sessions"), allow(dead_code))]
    pub(crate) fn adopt(
        &self,
        fields: impl IntoIterator<Item = (String, String)>,
        user: Option<String>,
    ) {
        let mut pending = self.inner.pending();
        for (field, json) in fields {
            pending.changes.fields.insert(field, Some(json));
        }
        if let Some(user) = user {
            self.bind(&mut pending.changes, user);
        }
    }

    /// Records the binding of a login: the user, and the client's details for the device list.
    fn bind(&self, changes: &mut Changes, user: String) {
        changes.user = Some(user);
        for (field, value) in self.inner.client.login_fields() {
            changes.fields.insert(field.to_owned(), value);
        }
    }

    /// Ends the request: what it recorded, taken for `commit`.
    pub(crate) fn end(&self) -> Ending<'_> {
        self.inner.end()
    }

    fn write_field<T: Serialize>(&self, field: &str, value: &T) -> Result<(), Error> {
        let json = serde_json::to_string(value).map_err(|source| Error::Serialize {
            key: field.to_owned(),
            source,
        })?;
        self.write_json(field.to_owned(), Some(json));
        Ok(())
    }

    /// Records a field's new JSON text, or its removal.
    pub(crate) fn write_json(&self, field: String, json: Option<String>) {
        self.inner.write_json(field, json);
    }

    /// The cookie's token, when a live session is stored under it: what the request came with.
    pub(crate) async fn live_token(&self) -> Result<Option<&Token>, Error> {
        self.inner.live_token().await
    }

    /// The token the session will have once the request ends, making sure it then exists.
    pub(crate) async fn token_at_end(&self) -> Result<&Token, Error> {
        self.inner.token_at_end().await
    }

    /// A field's JSON text, from this request's changes when it has any, else from the store.
    pub(crate) async fn read_field(&self, field: &str) -> Result<Option<String>, Error> {
        self.inner.read_field(field).await
    }
}

fn check_user_key(key: &str) -> Result<(), Error> {
    if key.starts_with(RESERVED_PREFIX) {
        Err(Error::ReservedKey(key.to_owned()))
    } else {
        Ok(())
    }
}

/// A value an increment cannot add to: not an integer, or one that would overflow.
fn not_an_integer(key: &str) -> Error {
    Error::Corrupt {
        key: key.to_owned(),
        source: CorruptValue::not_an_integer(),
    }
}

fn decode<T: DeserializeOwned>(key: &str, json: &str) -> Result<T, Error> {
    serde_json::from_str(json).map_err(|source| Error::Corrupt {
        key: key.to_owned(),
        source: source.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, SessionLayer};

    fn session() -> Session {
        let layer = SessionLayer::new(MemoryStore::default());
        Session::new(layer.shared(), None, false, Client::default(), Span::none())
    }

    #[tokio::test]
    async fn reserved_keys_are_a_typed_error_and_record_nothing() {
        let session = session();
        assert!(
            matches!(session.insert("$user", "mallory"), Err(Error::ReservedKey(key)) if key == "$user")
        );
        assert!(matches!(
            session.get::<String>("$created").await,
            Err(Error::ReservedKey(_))
        ));
        assert!(matches!(
            session.remove("$deadline"),
            Err(Error::ReservedKey(_))
        ));
        assert!(session.inner.pending().changes.is_empty());
    }

    #[tokio::test]
    async fn a_corrupt_value_never_shows_in_the_error_chain() {
        let session = session();
        session.insert("n", "hunter2-secret").unwrap();
        let error = session.get::<u64>("n").await.unwrap_err();
        let chain = format!("{error} / {}", std::error::Error::source(&error).unwrap());
        assert!(!chain.contains("hunter2"), "{chain}");
        assert_eq!(
            chain,
            "session value under `n` does not deserialize / JSON of another type at line 1, column 16"
        );
        let error = session.increment("n", 1).await.unwrap_err();
        let chain = format!("{error} / {}", std::error::Error::source(&error).unwrap());
        assert!(!chain.contains("hunter2"), "{chain}");
    }

    #[tokio::test]
    async fn values_read_back_from_the_delta_without_a_load() {
        let session = session();
        session.insert("n", 5_u64).unwrap();
        assert_eq!(session.get::<u64>("n").await.unwrap(), Some(5));
        assert!(
            matches!(session.get::<String>("n").await, Err(Error::Corrupt { key, .. }) if key == "n")
        );
        session.remove("n").unwrap();
        assert_eq!(session.get::<u64>("n").await.unwrap(), None);
    }
}

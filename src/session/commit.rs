//! The end of a request: what the handler recorded becomes one store write (create, update, cycle
//! or destroy), and the answer says what the session cookie must become. It works from the
//! [`Ending`] the session handed over and never calls back into the handle. Each write that
//! succeeds is also told to the lifecycle hook, if one is set.

use std::future::Future;
use std::mem;

use tracing::Span;

use super::state::{Ending, Found, Intent};
use crate::config::Limits;
use crate::cookie::CookieUpdate;
use crate::error::Error;
use crate::hooks::{SessionEvent, SessionEventKind};
use crate::id::Token;
use crate::metrics::{Event, Op};
use crate::shared::Shared;
use crate::store::{Changes, SaveMode, Saved};

/// Attempts at a fresh id before giving up; a collision among 122-bit ids means a broken RNG.
const CREATE_ATTEMPTS: usize = 3;

/// Writes what this request changed, in one store round trip, and says what the cookie must become.
/// Called by the service once the handler has produced its response. Without `save_changes` (a
/// failed handler), only a destroy is carried out: a logout is not a change to roll back.
pub(crate) async fn commit(
    mut end: Ending<'_>,
    shared: &Shared,
    save_changes: bool,
) -> Result<Option<CookieUpdate>, Error> {
    let changes = match (save_changes, end.intent) {
        (true, _) => mem::take(&mut end.changes),
        (false, Intent::Destroy | Intent::Destroyed) => Changes::default(),
        (false, _) => return Ok(None),
    };
    let config = &shared.config;
    if end.intent == Intent::Keep && changes.is_empty() {
        // A read-only request, or one that never touched its session (whose token is then never
        // hashed): a rolling persistent cookie follows the TTL the load just rolled.
        return Ok(match end.found {
            Found::Live {
                touched: true,
                ttl_ms,
            } if config.persistent => end.incoming().map(|(token, _)| CookieUpdate::Set {
                token: token.clone(),
                ttl_ms,
            }),
            _ => None,
        });
    }
    let incoming = end.incoming();
    // The session this request is attached to, unless a load showed that none lives under the id.
    let existing = incoming.filter(|_| end.found != Found::Nothing);
    let writer = Writer {
        shared,
        span: end.span,
        key: incoming.map(|(_, key)| key.log_prefix()),
        read: end.found != Found::NotLoaded,
        fresh: end.fresh,
        user: end.user,
    };
    let has_data = !changes.fields.is_empty() || changes.user.is_some() || changes.persist;

    if matches!(end.intent, Intent::Destroy | Intent::Destroyed) {
        if let (Intent::Destroy, Some((_, key))) = (end.intent, existing) {
            let destroyed = writer
                .observe(Op::Destroy, shared.store.destroy(key), |_| {
                    Some((Event::Destroy, "session destroyed"))
                })
                .await?;
            // Only a session that was there was logged out.
            if let Some(user) = destroyed {
                let kind = SessionEventKind::Destroy;
                shared.notify(|| SessionEvent::new(kind, key.log_prefix(), None, user.as_deref()));
            }
        }
        if has_data {
            return writer.create(&changes).await.map(Some);
        }
        return Ok(end.had_cookie.then_some(CookieUpdate::Remove));
    }

    let Some((token, key)) = existing else {
        return if has_data {
            writer.create(&changes).await.map(Some)
        } else {
            Ok(None)
        };
    };

    if end.intent == Intent::Cycle {
        let moved = writer.save_under_fresh_id(SaveMode::Cycle { from: key }, &changes);
        let cycled = writer
            .observe(Op::Cycle, moved, |cycled| {
                cycled
                    .is_some()
                    .then_some((Event::Cycle, "session id cycled"))
            })
            .await?;
        return match cycled {
            Some(update) => Ok(Some(update)),
            None => writer.gone(&changes, has_data).await,
        };
    }

    let saved = shared.store.save(
        key,
        SaveMode::Update {
            base: end.base,
            fence: end.fence,
        },
        &changes,
        &config.limits,
    );
    match writer
        .observe(Op::Update, saved, |saved| {
            matches!(saved, Saved::Written { .. }).then_some((Event::Update, "session saved"))
        })
        .await?
    {
        Saved::Written { ttl_ms, size, .. } => {
            shared.metrics.record_size(size);
            Ok(config.persistent.then(|| CookieUpdate::Set {
                token: token.clone(),
                ttl_ms,
            }))
        }
        Saved::Gone => writer.gone(&changes, has_data).await,
        Saved::TooLarge => Err(too_large(&config.limits)),
        Saved::Collision => Err(exhausted()),
        Saved::Fenced => Err(Error::LockLost),
    }
}

/// What the writes of one request's end share.
struct Writer<'a> {
    shared: &'a Shared,
    span: &'a Span,
    /// The prefix of the cookie's key id, for the log lines.
    key: Option<&'a str>,
    /// Whether the request read its session.
    read: bool,
    /// The token this request drew for the session's fresh id, if it did (see `Ending::fresh`).
    fresh: Option<&'a Token>,
    /// The user the request's load found, if it read its session.
    user: Option<&'a str>,
}

impl Writer<'_> {
    async fn observe<T>(
        &self,
        op: Op,
        call: impl Future<Output = Result<T, Error>>,
        done: impl FnOnce(&T) -> Option<(Event, &'static str)>,
    ) -> Result<T, Error> {
        self.shared.metrics.observe(op, self.key, call, done).await
    }

    /// The session vanished before its save. If this request read it, its changes were computed
    /// from a session that has since been destroyed or expired: refuse them rather than bring it
    /// back. If it never read it, the cookie's id was simply unknown: start a new session with the
    /// changes.
    async fn gone(&self, changes: &Changes, has_data: bool) -> Result<Option<CookieUpdate>, Error> {
        if self.read {
            tracing::debug!(
                key = self.key,
                "session ended during the request; changes refused"
            );
            return Err(Error::Ended);
        }
        if has_data {
            self.create(changes).await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// Writes a new session under a fresh id that is not taken.
    async fn create(&self, changes: &Changes) -> Result<CookieUpdate, Error> {
        let created = self.save_under_fresh_id(SaveMode::New, changes);
        self.observe(Op::Create, created, |created| {
            created
                .is_some()
                .then_some((Event::Create, "session created"))
        })
        .await?
        .ok_or_else(exhausted)
    }

    /// Saves under a fresh id (a new session, or this one moved), drawing another id if the first
    /// is taken. `None` when the session to move no longer exists.
    async fn save_under_fresh_id(
        &self,
        mode: SaveMode<'_>,
        changes: &Changes,
    ) -> Result<Option<CookieUpdate>, Error> {
        let config = &self.shared.config;
        let mut drawn = self.fresh;
        for _ in 0..CREATE_ATTEMPTS {
            // The token a CSRF token of this request was derived from comes first, so that it
            // verifies once the session lives under it. After a collision (a broken random
            // source) the next draw is new, and that CSRF token fails, as it should.
            let token = drawn.take().cloned().unwrap_or_else(|| config.new_token());
            let key = config.key_id(&token);
            match self
                .shared
                .store
                .save(&key, mode, changes, &config.limits)
                .await?
            {
                Saved::Written { ttl_ms, size, .. } => {
                    self.shared.metrics.record_size(size);
                    // From here on the request's span names the session it ends with.
                    self.span.record("key", key.log_prefix());
                    self.shared
                        .notify(|| self.written(mode, changes, key.log_prefix()));
                    return Ok(Some(CookieUpdate::Set { token, ttl_ms }));
                }
                Saved::Collision => tracing::warn!("fresh session id collided; retrying"),
                Saved::Gone => return Ok(None),
                Saved::TooLarge => return Err(too_large(&config.limits)),
                // Only an update carries a fencing token.
                Saved::Fenced => return Err(Error::LockLost),
            }
        }
        Err(exhausted())
    }

    /// The event of a session written under the fresh id `key`: a login is one `Login`, whether
    /// it created the session or moved it; else a new session or a cycle.
    fn written(&self, mode: SaveMode<'_>, changes: &Changes, key: &str) -> SessionEvent {
        let (kind, previous, user) = match (&changes.user, mode) {
            (Some(user), SaveMode::Cycle { from }) => (
                SessionEventKind::Login,
                Some(from.log_prefix()),
                Some(user.as_str()),
            ),
            (Some(user), _) => (SessionEventKind::Login, None, Some(user.as_str())),
            (None, SaveMode::Cycle { from }) => {
                (SessionEventKind::Cycle, Some(from.log_prefix()), self.user)
            }
            // Not the loaded user's: after a logout, a new session starts with none.
            (None, _) => (SessionEventKind::Created, None, None),
        };
        SessionEvent::new(kind, key, previous, user)
    }
}

fn too_large(limits: &Limits) -> Error {
    Error::TooLarge {
        limit: limits.max_bytes,
    }
}

/// Three fresh 122-bit ids all taken: the random source is broken, so refuse to write.
fn exhausted() -> Error {
    Error::Store(fred::error::Error::new(
        fred::error::ErrorKind::Unknown,
        "no free session id after repeated attempts",
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::session::Session;
    use crate::{MemoryStore, SessionLayer};

    #[tokio::test]
    async fn a_request_that_never_touches_its_session_never_hashes_its_id() {
        let shared = SessionLayer::new(MemoryStore::default()).shared();
        let token = Token::generate();
        let session = Session::new(
            Arc::clone(&shared),
            Some(token.as_str()),
            true,
            crate::devices::Client::default(),
            Span::none(),
        );
        let update = commit(session.end(), &shared, true).await.unwrap();
        assert!(update.is_none());
        assert!(!session.inner.key_is_hashed());
    }
}

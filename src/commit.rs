//! The end of a request: what the handler recorded becomes one store write (create, update, cycle
//! or destroy), and the answer says what the session cookie must become.

use cookie::Cookie;

use crate::config::{Config, Limits};
use crate::error::Error;
use crate::id::Token;
use crate::metrics::{Event, Op};
use crate::session::{Intent, Session};
use crate::store::{Changes, SaveMode, Saved, CSRF_FIELD};

/// Attempts at a fresh id before giving up; a collision among 122-bit ids means a broken RNG.
const CREATE_ATTEMPTS: usize = 3;

/// What the response must tell the browser about the session cookie.
#[derive(Debug)]
pub(crate) enum CookieUpdate {
    Set(Cookie<'static>),
    Remove(Cookie<'static>),
}

/// Writes what this request changed, in one store round trip, and says what the cookie must become.
/// Called by the service once the handler has produced its response. Without `save_changes` (a
/// failed handler), only a destroy is carried out: a logout is not a change to roll back.
pub(crate) async fn commit(
    session: &Session,
    save_changes: bool,
) -> Result<Option<CookieUpdate>, Error> {
    let (changes, intent) = session.take_pending();
    let (changes, intent) = match (save_changes, intent) {
        (true, _) => (changes, intent),
        (false, Intent::Destroy | Intent::Destroyed) => (Changes::default(), intent),
        (false, _) => return Ok(None),
    };
    let config = &session.shared().config;
    if intent == Intent::Keep && changes.is_empty() {
        // A read-only request, or one that never touched its session (whose token is then never
        // hashed): a rolling persistent cookie follows the TTL the load just rolled.
        let touched = session
            .loaded()
            .flatten()
            .filter(|loaded| loaded.touched && config.persistent);
        return Ok(touched.and_then(|loaded| {
            let (token, _) = session.incoming()?;
            Some(CookieUpdate::Set(session_cookie(
                config,
                token,
                loaded.ttl_ms,
            )))
        }));
    }
    // The session this request is attached to, unless a load showed that none lives under the id.
    let existing = match session.loaded() {
        Some(None) => None,
        _ => session.incoming(),
    };
    let has_data = !changes.fields.is_empty() || changes.user.is_some();

    if matches!(intent, Intent::Destroy | Intent::Destroyed) {
        if let (Intent::Destroy, Some((_, key))) = (intent, existing) {
            let store = &session.shared().store;
            session
                .observe(Op::Destroy, store.destroy(key), |()| {
                    Some((Event::Destroy, "session destroyed"))
                })
                .await?;
        }
        if has_data {
            return create(session, &changes).await.map(Some);
        }
        return Ok(session
            .had_cookie()
            .then(|| CookieUpdate::Remove(config.removal_cookie())));
    }

    let Some((token, key)) = existing else {
        return if has_data {
            create(session, &changes).await.map(Some)
        } else {
            Ok(None)
        };
    };

    if intent == Intent::Cycle {
        // A new id, a new CSRF token: the old one is not carried over (the next use makes one).
        let mut changes = changes;
        changes.fields.entry(CSRF_FIELD.to_owned()).or_insert(None);
        let cycled = session
            .observe(
                Op::Cycle,
                save_under_fresh_id(session, SaveMode::Cycle { from: key }, &changes),
                |cycled| {
                    cycled
                        .is_some()
                        .then_some((Event::Cycle, "session id cycled"))
                },
            )
            .await?;
        return match cycled {
            Some(update) => Ok(Some(update)),
            None => gone(session, &changes, has_data).await,
        };
    }

    let store = &session.shared().store;
    let saved = store.save(key, SaveMode::Update, &changes, &config.limits);
    match session
        .observe(Op::Update, saved, |saved| {
            matches!(saved, Saved::Written { .. }).then_some((Event::Update, "session saved"))
        })
        .await?
    {
        Saved::Written { ttl_ms, size, .. } => {
            session.shared().metrics.record_size(size);
            Ok(config
                .persistent
                .then(|| CookieUpdate::Set(session_cookie(config, token, ttl_ms))))
        }
        Saved::Gone => gone(session, &changes, has_data).await,
        Saved::TooLarge => Err(too_large(&config.limits)),
        Saved::Collision => Err(exhausted()),
    }
}

/// The session vanished before its save. If this request read it, its changes were computed from a
/// session that has since been destroyed or expired: refuse them rather than bring it back. If it
/// never read it, the cookie's id was simply unknown: start a new session with the changes.
async fn gone(
    session: &Session,
    changes: &Changes,
    has_data: bool,
) -> Result<Option<CookieUpdate>, Error> {
    if session.loaded().is_some() {
        tracing::debug!(
            key = session.id_prefix(),
            "session ended during the request; changes refused"
        );
        return Err(Error::Ended);
    }
    if has_data {
        create(session, changes).await.map(Some)
    } else {
        Ok(None)
    }
}

/// Writes a new session under a fresh id that is not taken.
async fn create(session: &Session, changes: &Changes) -> Result<CookieUpdate, Error> {
    session
        .observe(
            Op::Create,
            save_under_fresh_id(session, SaveMode::New, changes),
            |created| {
                created
                    .is_some()
                    .then_some((Event::Create, "session created"))
            },
        )
        .await?
        .ok_or_else(exhausted)
}

/// Saves under a fresh id (a new session, or this one moved), drawing another id if the first is
/// taken. `None` when the session to move no longer exists.
async fn save_under_fresh_id(
    session: &Session,
    mode: SaveMode<'_>,
    changes: &Changes,
) -> Result<Option<CookieUpdate>, Error> {
    let shared = session.shared();
    let config = &shared.config;
    for _ in 0..CREATE_ATTEMPTS {
        let token = Token::generate();
        let key = token.key_id(config.hash_ids);
        match shared
            .store
            .save(&key, mode, changes, &config.limits)
            .await?
        {
            Saved::Written { ttl_ms, size, .. } => {
                shared.metrics.record_size(size);
                // From here on the request's span names the session it ends with.
                session.span().record("key", key.log_prefix());
                return Ok(Some(CookieUpdate::Set(session_cookie(
                    config, &token, ttl_ms,
                ))));
            }
            Saved::Collision => tracing::warn!("fresh session id collided; retrying"),
            Saved::Gone => return Ok(None),
            Saved::TooLarge => return Err(too_large(&config.limits)),
        }
    }
    Err(exhausted())
}

fn session_cookie(config: &Config, token: &Token, ttl_ms: i64) -> Cookie<'static> {
    config.cookie(
        token.as_str().to_owned(),
        Some(time::Duration::milliseconds(ttl_ms)),
    )
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

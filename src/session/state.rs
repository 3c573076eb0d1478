//! One request's session state: the snapshot the first read loads, the delta the handler records,
//! and [`State::end`], which hands both to `commit` as one value once the handler is done.

use std::collections::HashMap;
use std::mem;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::sync::OnceCell;
use tracing::Span;

use super::lock::Held;
use crate::devices::Client;
use crate::error::Error;
use crate::id::{KeyId, Token};
use crate::metrics::{Event, Op};
use crate::shared::Shared;
use crate::store::{Changes, Loaded};

/// What must happen at the end of the request, beyond the field changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intent {
    Keep,
    /// Move the session to a fresh id.
    Cycle,
    /// Delete the session; changes recorded afterwards start a new one.
    Destroy,
    /// Already deleted from the store (logout everywhere); only the cookie remains to be removed.
    Destroyed,
}

/// What the handler recorded so far.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) changes: Changes,
    pub(super) intent: Intent,
    /// Values this request has already written to the store itself (increments): what later
    /// reads in the request see, though the load before them did not.
    pub(super) applied: HashMap<String, String>,
    /// The session's lock, once this request has taken it (`Session::lock`).
    pub(super) lock: Option<Arc<Held>>,
}

/// The well-formed token a request's cookie carried, and its key id. No `Debug`: with hashing
/// off, the key id is the token.
pub(crate) struct Incoming {
    token: Token,
    hashed: bool,
    /// Hashed on first use: requests that never touch their session do not pay for it.
    key: OnceLock<KeyId>,
}

impl Incoming {
    /// The token and its key id, which names the request's span once it is known.
    fn get(&self, span: &Span) -> (&Token, &KeyId) {
        let key = self.key.get_or_init(|| {
            let key = self.token.key_id(self.hashed);
            span.record("key", key.log_prefix());
            key
        });
        (&self.token, key)
    }
}

/// What the request's load found, as far as the end of the request cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// The session was never read.
    NotLoaded,
    /// No live session under the cookie's id.
    Nothing,
    /// A live session, whose TTL is `ttl_ms` after the load (which rolled it if `touched`).
    Live { touched: bool, ttl_ms: i64 },
}

/// Everything the end of a request needs, taken from the session in one go: `commit` works from
/// this alone and never calls back into the handle.
pub(crate) struct Ending<'a> {
    pub(crate) changes: Changes,
    pub(crate) intent: Intent,
    pub(crate) found: Found,
    /// The session as the load found it, unless the request has since changed it in the store
    /// itself (an increment): what the store may write from without reading it again.
    pub(crate) base: Option<&'a Loaded>,
    /// The user the load found the session bound to, for the lifecycle hook's events.
    pub(crate) user: Option<&'a str>,
    /// The fencing token of the session's lock while this request holds it: its save is refused
    /// if another request has taken the lock since.
    pub(crate) fence: Option<u64>,
    /// Whether the request carried a session cookie at all, valid or not.
    pub(crate) had_cookie: bool,
    /// The request's `session` span; its `key` field names the session the request ends with.
    pub(crate) span: &'a Span,
    /// The token drawn for the session's next fresh id, if the request asked for it (a CSRF token
    /// was derived from it): the first a save under a fresh id must try.
    pub(crate) fresh: Option<&'a Token>,
    incoming: Option<&'a Incoming>,
}

impl Ending<'_> {
    /// The cookie's token and its key id (hashed now if nothing hashed it yet).
    pub(crate) fn incoming(&self) -> Option<(&Token, &KeyId)> {
        self.incoming.map(|incoming| incoming.get(self.span))
    }
}

/// The state behind a [`Session`](super::Session) handle, shared by its clones.
pub(super) struct State {
    pub(super) shared: Arc<Shared>,
    /// What the request tells about its client, for a login to record.
    pub(super) client: Client,
    incoming: Option<Incoming>,
    had_cookie: bool,
    /// The request's `session` span; its `key` field is recorded once a key id is known.
    span: Span,
    /// `Some(None)` once a load found no live session under the incoming id.
    loaded: OnceCell<Option<Loaded>>,
    /// The token for the session's next fresh id, drawn when the request first needs to know it.
    fresh: OnceLock<Token>,
    pending: Mutex<Pending>,
}

impl State {
    pub(super) fn new(
        shared: Arc<Shared>,
        cookie: Option<&str>,
        had_cookie: bool,
        client: Client,
        span: Span,
    ) -> Self {
        let hashed = shared.config.hashes_ids();
        let incoming = cookie.and_then(|value| shared.config.read_cookie(value));
        Self {
            shared,
            client,
            incoming: incoming.map(|token| Incoming {
                token,
                hashed,
                key: OnceLock::new(),
            }),
            had_cookie,
            span,
            loaded: OnceCell::new(),
            fresh: OnceLock::new(),
            pending: Mutex::new(Pending {
                changes: Changes::default(),
                intent: Intent::Keep,
                applied: HashMap::new(),
                lock: None,
            }),
        }
    }

    pub(super) fn pending(&self) -> MutexGuard<'_, Pending> {
        // Each critical section leaves `Pending` consistent, so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cookie's token and its key id, if the cookie carried a well-formed one.
    pub(super) fn incoming(&self) -> Option<(&Token, &KeyId)> {
        self.incoming
            .as_ref()
            .map(|incoming| incoming.get(&self.span))
    }

    /// What the load found: `None` if the session was never loaded, `Some(None)` if no live
    /// session was under the cookie's id.
    pub(super) fn loaded(&self) -> Option<Option<&Loaded>> {
        self.loaded.get().map(Option::as_ref)
    }

    /// The cookie's token, when a live session is stored under it (loading the session to know).
    pub(super) async fn live_token(&self) -> Result<Option<&Token>, Error> {
        let live = self.load().await?.is_some();
        Ok(self.incoming().map(|(token, _)| token).filter(|_| live))
    }

    /// The token the session will have once the request ends: the cookie's, when the request
    /// keeps the live session stored under it; else the fresh one its end will save the session
    /// under, which is drawn now, and the session is then saved even if nothing else changes.
    pub(super) async fn token_at_end(&self) -> Result<&Token, Error> {
        if self.pending().intent == Intent::Keep {
            if let Some(token) = self.live_token().await? {
                return Ok(token);
            }
        }
        self.pending().changes.persist = true;
        Ok(self.fresh.get_or_init(|| self.shared.config.new_token()))
    }

    /// Records that no session lives under the cookie's id, found without a load.
    pub(super) fn mark_missing(&self) {
        let _ = self.loaded.set(None);
    }

    /// Records a field's new JSON text, or its removal.
    pub(super) fn write_json(&self, field: String, json: Option<String>) {
        self.pending().changes.fields.insert(field, json);
    }

    /// A field's JSON text, from this request's changes when it has any, else from the store.
    pub(super) async fn read_field(&self, field: &str) -> Result<Option<String>, Error> {
        {
            let pending = self.pending();
            if let Some(change) = pending.changes.fields.get(field) {
                return Ok(change.clone());
            }
            if pending.changes.clear {
                return Ok(None);
            }
            if let Some(value) = pending.applied.get(field) {
                return Ok(Some(value.clone()));
            }
        }
        Ok(self
            .load()
            .await?
            .and_then(|loaded| loaded.fields.get(field).cloned()))
    }

    /// Loads the session once per request; concurrent callers share the one load.
    pub(super) async fn load(&self) -> Result<Option<&Loaded>, Error> {
        let Some((_, key)) = self.incoming() else {
            return Ok(None);
        };
        let loaded = self
            .loaded
            .get_or_try_init(|| {
                let shared = &self.shared;
                let load = shared.store.load(key, &shared.config.limits);
                shared
                    .metrics
                    .observe(Op::Load, Some(key.log_prefix()), load, |loaded| {
                        let event = Event::Load {
                            found: loaded.is_some(),
                            touched: loaded.as_ref().is_some_and(|l| l.touched),
                            cached: loaded.as_ref().is_some_and(|l| l.cached),
                        };
                        let message = match loaded {
                            Some(l) if l.cached => "session served by the near-cache",
                            Some(l) if l.touched => "session loaded, its TTL rolled",
                            Some(_) => "session loaded",
                            None => "no live session under the cookie's id",
                        };
                        Some((event, message))
                    })
            })
            .await?;
        Ok(loaded.as_ref())
    }

    /// Whether the request has recorded something that the end of the request is yet to save.
    pub(super) fn has_unsaved_changes(&self) -> bool {
        let pending = self.pending();
        !pending.changes.is_empty() || pending.intent != Intent::Keep
    }

    /// Releases the session's lock if this request took it: at the end of the request, after
    /// its save.
    pub(super) async fn release_lock(&self) {
        let held = self.pending().lock.take();
        if let Some(held) = held {
            held.release().await;
        }
    }

    /// Ends the request: takes what it recorded, leaving nothing pending, with what the end needs
    /// to know about the cookie and the load. The key id is not hashed here.
    pub(super) fn end(&self) -> Ending<'_> {
        let (changes, intent, applied, fence) = {
            let mut pending = self.pending();
            let fence = pending.lock.as_ref().filter(|held| !held.is_released());
            let fence = fence.map(|held| held.token);
            (
                mem::take(&mut pending.changes),
                mem::replace(&mut pending.intent, Intent::Keep),
                !pending.applied.is_empty(),
                fence,
            )
        };
        let found = match self.loaded() {
            None => Found::NotLoaded,
            Some(None) => Found::Nothing,
            Some(Some(loaded)) => Found::Live {
                touched: loaded.touched,
                ttl_ms: loaded.ttl_ms,
            },
        };
        Ending {
            changes,
            intent,
            found,
            base: self.loaded().flatten().filter(|_| !applied),
            user: self
                .loaded()
                .flatten()
                .and_then(|loaded| loaded.user.as_deref()),
            fence,
            had_cookie: self.had_cookie,
            span: &self.span,
            fresh: self.fresh.get(),
            incoming: self.incoming.as_ref(),
        }
    }

    /// Whether the cookie's key id has been hashed, for tests of its laziness.
    #[cfg(test)]
    pub(super) fn key_is_hashed(&self) -> bool {
        self.incoming
            .as_ref()
            .is_some_and(|incoming| incoming.key.get().is_some())
    }
}

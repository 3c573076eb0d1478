//! A session's lock, for a critical section of a request ([`Session::lock`]). It lives in the
//! session's own hash (`$lock`, `$fence`: see `store/layout.rs`), so it shares the session's slot
//! and the save at the end of the request can check it in the same atomic step as its write.
//!
//! - **Taking** it is one single-key script per attempt; a request that finds it held polls
//!   again after a pause that starts at 5 ms and doubles up to 50 ms, until the layer's wait runs
//!   out ([`Error::LockBusy`]).
//! - **Keeping** it: a task renews it three times per TTL while it is held, so it outlives any
//!   section however long; a holder that died (or stalled) stops renewing and the lock frees
//!   itself one TTL later.
//! - **Fencing**: each lock taken gets the session's `$fence` plus one as its token. The request's
//!   save carries the token and is refused ([`Error::LockLost`]) once another request has taken
//!   the lock since: a holder that overran its TTL cannot overwrite the next holder's work.
//! - **Releasing**: at the end of the request, after its save; sooner when the guard drops with
//!   nothing recorded that is yet to be saved. If the request never ends normally (a panic, a
//!   dropped future), dropping its state releases it; a release that cannot run leaves a lock that
//!   expires by its TTL.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;

use super::Session;
use crate::error::Error;
use crate::id::KeyId;
use crate::store::{Backend, LockOp, Locked};

/// The first pause between two attempts at a busy lock; each pause doubles it, up to [`MOST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MOST_PAUSE: Duration = Duration::from_millis(50);

/// Holds its session's lock: other requests of the session that call [`Session::lock`] wait until
/// it is released. Requests that do not ask for the lock are neither held up nor checked by it: it
/// is advisory, between lockers.
///
/// Released when the request ends (after its save), or when the guard drops if the request has no
/// change left to save by then: what a request changed under the lock is always saved before
/// another request gets it. If the lock was lost meanwhile (it expired while its renewal could not
/// reach the store, and another request took it), the save is refused with
/// [`Error::LockLost`] (409).
///
/// # Examples
///
/// ```
/// use axum_redis_session::{Error, Session};
///
/// /// Places the order in the cart once, however many times the button is pressed.
/// async fn checkout(session: Session) -> Result<String, Error> {
///     let _lock = session.lock().await?;
///     // Read after taking the lock: what an earlier holder wrote is saved by now.
///     if let Some(order) = session.get::<String>("order").await? {
///         return Ok(order);
///     }
///     let cart: Vec<String> = session.get("cart").await?.unwrap_or_default();
///     let order = format!("order of {} items", cart.len());
///     session.insert("order", &order)?;
///     session.remove("cart")?;
///     Ok(order)
/// }
/// ```
#[must_use = "the lock is released when the guard drops"]
pub struct SessionLock {
    session: Session,
    /// `None` when there was no stored session to lock: a session this request starts is seen by
    /// no other request until it ends.
    held: Option<Arc<Held>>,
}

impl fmt::Debug for SessionLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLock")
            .field("held", &self.is_held())
            .finish_non_exhaustive()
    }
}

impl SessionLock {
    /// Whether the lock is still this request's as far as it knows: `false` once it is released,
    /// or once its renewal found it taken by another request or could not reach the store before
    /// it expired. The save at the end of the request is what decides, by its fencing token.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn handler(session: axum_redis_session::Session) -> Result<(), axum_redis_session::Error> {
    /// let lock = session.lock().await?;
    /// // ... a long step ...
    /// if !lock.is_held() {
    ///     return Err(axum_redis_session::Error::LockLost);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_held(&self) -> bool {
        self.held.as_ref().is_none_or(|held| held.is_open())
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        let Some(held) = &self.held else {
            return;
        };
        let last = held.guards.fetch_sub(1, Ordering::AcqRel) == 1;
        // With changes still to save, the end of the request releases it, after the save.
        if last && !self.session.inner.has_unsaved_changes() {
            held.release_in_background();
        }
    }
}

/// A lock this request took: shared by its guards and the request's state, which releases it at
/// the end of the request, or when it drops if the request never got there.
pub(crate) struct Held {
    store: Backend,
    key: KeyId,
    pub(super) token: u64,
    /// Guards alive; the request's state is not one.
    guards: AtomicUsize,
    released: AtomicBool,
    renewal: Arc<Renewal>,
    renewing: AbortHandle,
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("token", &self.token)
            .field("open", &self.is_open())
            .finish_non_exhaustive()
    }
}

/// What the renewing task knows of the lock.
#[derive(Debug)]
struct Renewal {
    /// Until when the lock is surely still ours: the TTL from the sending of the last take or
    /// renewal that the store confirmed.
    until: Mutex<Instant>,
    /// A renewal found it taken by another request, or could not reach the store in time.
    lost: AtomicBool,
}

impl Renewal {
    fn valid(&self) -> bool {
        let until = *self.until.lock().unwrap_or_else(PoisonError::into_inner);
        !self.lost.load(Ordering::Acquire) && Instant::now() < until
    }
}

impl Held {
    /// Still held and not known to be lost: another guard may share it.
    fn is_open(&self) -> bool {
        !self.released.load(Ordering::Acquire) && self.renewal.valid()
    }

    /// Whether it was released; until then, the request's save carries its token.
    pub(super) fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    /// Marks it released; `true` for the one call that must send the release.
    fn close(&self) -> bool {
        let first = !self.released.swap(true, Ordering::AcqRel);
        if first {
            self.renewing.abort();
        }
        first
    }

    /// Releases it now. A release that fails leaves a lock that expires by its TTL.
    pub(super) async fn release(&self) {
        if self.close() {
            let release = LockOp::Release { token: self.token };
            if let Err(error) = self.store.lock_session(&self.key, release).await {
                tracing::debug!(key = self.key.log_prefix(), %error, "session lock not released; it expires by its TTL");
            }
        }
    }

    /// Releases it from a task of its own, for a drop, which cannot wait. Outside a runtime (one
    /// shutting down) nothing is sent, and the lock expires by its TTL.
    fn release_in_background(&self) {
        if !self.close() {
            return;
        }
        let (store, key, token) = (self.store.clone(), self.key.clone(), self.token);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = store.lock_session(&key, LockOp::Release { token }).await;
            });
        }
    }
}

impl Drop for Held {
    /// The request ended without releasing it (a panic, a dropped future).
    fn drop(&mut self) {
        self.release_in_background();
    }
}

/// Takes the session's lock for `session`'s request, waiting for another holder up to the layer's
/// bound. Called by [`Session::lock`].
pub(super) async fn lock(session: &Session) -> Result<SessionLock, Error> {
    let state = &session.inner;
    let unlocked = || SessionLock {
        session: session.clone(),
        held: None,
    };
    if let Some(held) = state.pending().lock.clone().filter(|held| held.is_open()) {
        // This request holds it already: one more guard on the same lock.
        held.guards.fetch_add(1, Ordering::AcqRel);
        return Ok(SessionLock {
            session: session.clone(),
            held: Some(held),
        });
    }
    let Some((_, key)) = state.incoming() else {
        return Ok(unlocked());
    };
    if matches!(state.loaded(), Some(None)) {
        return Ok(unlocked());
    }
    let shared = &state.shared;
    let settings = shared.config.lock;
    let ttl: Duration = settings.ttl.try_into().unwrap_or_default();
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let wait: Duration = settings.wait.try_into().unwrap_or_default();
    let deadline = Instant::now() + wait;
    let mut pause = FIRST_PAUSE;
    let (token, sent) = loop {
        let sent = Instant::now();
        let left = match shared
            .store
            .lock_session(key, LockOp::Take { ttl_ms })
            .await?
        {
            Locked::Ours(token) => break (token, sent),
            Locked::Gone if state.loaded().is_some() => return Err(Error::Ended),
            Locked::Gone => {
                // Nothing stored under the cookie's id: the request starts a new session.
                state.mark_missing();
                return Ok(unlocked());
            }
            Locked::Busy { left_ms } => Duration::from_millis(u64::try_from(left_ms).unwrap_or(1)),
            Locked::NotOurs => pause,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::LockBusy);
        }
        tokio::time::sleep(pause.min(left).min(deadline - now)).await;
        pause = (pause * 2).min(MOST_PAUSE);
    };
    let renewal = Arc::new(Renewal {
        until: Mutex::new(sent + ttl),
        lost: AtomicBool::new(false),
    });
    let renewing = tokio::spawn(renew(
        shared.store.clone(),
        key.clone(),
        token,
        ttl,
        Arc::clone(&renewal),
    ))
    .abort_handle();
    let held = Arc::new(Held {
        store: shared.store.clone(),
        key: key.clone(),
        token,
        guards: AtomicUsize::new(1),
        released: AtomicBool::new(false),
        renewal,
        renewing,
    });
    // A lock this request held before (released, or lost) is replaced: its save carries the
    // newest token.
    state.pending().lock = Some(Arc::clone(&held));
    Ok(SessionLock {
        session: session.clone(),
        held: Some(held),
    })
}

/// Renews the lock three times per TTL until it is released (which aborts this task) or lost. A
/// renewal that fails is tried again at the next tick while the lock surely still runs.
async fn renew(store: Backend, key: KeyId, token: u64, ttl: Duration, renewal: Arc<Renewal>) {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::time::sleep(ttl / 3).await;
        let sent = Instant::now();
        match store
            .lock_session(&key, LockOp::Renew { token, ttl_ms })
            .await
        {
            Ok(Locked::Ours(_)) => {
                *renewal.until.lock().unwrap_or_else(PoisonError::into_inner) = sent + ttl;
            }
            Err(_) if renewal.valid() => {}
            Ok(_) | Err(_) => break,
        }
    }
    renewal.lost.store(true, Ordering::Release);
    tracing::debug!(key = key.log_prefix(), "session lock lost");
}

//! The near-cache: sessions this process read recently, served without a round trip while Redis
//! vouches that they have not changed. Redis's client tracking tells us when a key we read changes
//! (see `tracking.rs`); this file holds the entries and the rules that keep them honest:
//!
//! - an entry is served only while tracking is confirmed on and the lease (renewed by heartbeats
//!   that prove the invalidation path alive) has not run out;
//! - a read that fills an entry is marked before it is sent, and an invalidation, a flush or a
//!   reconnect that happens meanwhile poisons it, so a reply that raced a write is never stored;
//! - an entry never outlives the session's TTL as Redis last reported it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::broadcast::Receiver;

use super::{Changes, Loaded};

/// How long a proof that the invalidation path is alive lets entries be served. Redis frozen or
/// unreachable for longer than this means no hits: requests go to Redis and fail there.
pub(crate) const LEASE: Duration = Duration::from_secs(1);

/// A cached session: what a load returned, and when its TTL runs out (unix ms, Redis's clock).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) loaded: Loaded,
    pub(crate) version: u64,
    pub(crate) expires_at: i64,
}

impl Entry {
    /// This entry after our own save of `changes` wrote `version` and left the TTL at `ttl_ms`.
    pub(crate) fn after_save(&self, changes: &Changes, version: u64, ttl_ms: i64, now: i64) -> Self {
        let mut loaded = self.loaded.clone();
        if changes.clear {
            loaded.fields.clear();
        }
        for (field, value) in &changes.fields {
            match value {
                Some(value) => loaded.fields.insert(field.clone(), value.clone()),
                None => loaded.fields.remove(field),
            };
        }
        if let Some(user) = &changes.user {
            loaded.user = Some(user.clone());
        }
        Self {
            loaded,
            version,
            expires_at: now + ttl_ms,
        }
    }
}

/// A read in flight whose reply may become an entry.
#[derive(Debug)]
pub(crate) struct Fill {
    key: String,
    ticket: u64,
    epoch: u64,
}

/// The cache of one store, shared by its clones and its tracking tasks.
#[derive(Clone)]
pub(crate) struct NearCache {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// When the lease runs out, in milliseconds since `started`.
    lease_until: AtomicU64,
    started: Instant,
}

struct State {
    entries: quick_cache::unsync::Cache<String, Arc<Entry>>,
    /// Keys being read, by the ticket of the latest read; an invalidation removes the key.
    filling: HashMap<String, u64>,
    next_ticket: u64,
    /// Bumped by every flush: a fill begun in an older epoch is never stored.
    epoch: u64,
    /// Tracking is confirmed on, for this epoch, on every connection that reads sessions.
    tracking: bool,
    /// Invalidations not yet applied, one receiver per listening connection.
    receivers: Vec<Receiver<fred::types::client::Invalidation>>,
}

impl std::fmt::Debug for NearCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("entries", &self.lock().entries.len())
            .finish_non_exhaustive()
    }
}

impl NearCache {
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    entries: quick_cache::unsync::Cache::new(max_entries),
                    filling: HashMap::new(),
                    next_ticket: 0,
                    epoch: 0,
                    tracking: false,
                    receivers: Vec::new(),
                }),
                lease_until: AtomicU64::new(0),
                started: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section below leaves the state consistent, so a poisoned lock is usable.
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.apply_invalidations();
        state
    }

    fn since_start(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.inner.started).as_millis()).unwrap_or(0)
    }

    /// The entry for `key`, if it may be served now: tracking on, lease current, TTL not run out.
    pub(crate) fn get(&self, key: &str, now_unix_ms: i64) -> Option<Arc<Entry>> {
        let state = self.lock();
        if !state.tracking
            || self.since_start(Instant::now()) >= self.inner.lease_until.load(Ordering::Acquire)
        {
            return None;
        }
        state
            .entries
            .get(key)
            .filter(|entry| entry.expires_at > now_unix_ms)
            .cloned()
    }

    /// Marks `key` as being read; `None` while tracking is not on (the reply will not be kept).
    pub(crate) fn begin_fill(&self, key: &str) -> Option<Fill> {
        let mut state = self.lock();
        if !state.tracking {
            return None;
        }
        state.next_ticket += 1;
        let ticket = state.next_ticket;
        state.filling.insert(key.to_owned(), ticket);
        Some(Fill {
            key: key.to_owned(),
            ticket,
            epoch: state.epoch,
        })
    }

    /// Ends a fill: keeps `entry` only if nothing invalidated the key, flushed the cache or began a
    /// later fill of it meanwhile; `None` (the session is gone, or the read failed) drops the key.
    pub(crate) fn finish_fill(&self, fill: Fill, entry: Option<Entry>) {
        let mut state = self.lock();
        let current = state.filling.get(&fill.key) == Some(&fill.ticket);
        if current {
            state.filling.remove(&fill.key);
        }
        match entry {
            Some(entry) if current && state.tracking && state.epoch == fill.epoch => {
                state.entries.insert(fill.key, Arc::new(entry));
            }
            _ => state.forget(&fill.key),
        }
    }

    /// Forgets `key`: after this process changed or deleted it, or Redis said it changed.
    pub(crate) fn invalidate(&self, key: &str) {
        self.lock().forget(key);
    }

    /// Forgets everything and stops serving until tracking is confirmed again.
    pub(crate) fn flush(&self) {
        self.lock().flush();
    }

    /// Starts a new epoch whose invalidations arrive on `receivers`: called once tracking is
    /// confirmed on every connection. Returns the epoch, for [`confirm`](Self::confirm).
    pub(crate) fn begin_epoch(&self, receivers: Vec<Receiver<fred::types::client::Invalidation>>) -> u64 {
        let mut state = self.lock();
        state.flush();
        state.receivers = receivers;
        state.epoch
    }

    /// Turns serving on for `epoch`, unless something flushed the cache since it began.
    pub(crate) fn confirm(&self, epoch: u64) -> bool {
        let mut state = self.lock();
        state.tracking = state.epoch == epoch;
        state.tracking
    }

    /// Extends the lease to [`LEASE`] after `sent`, the moment a successful heartbeat was sent.
    pub(crate) fn renew_lease(&self, sent: Instant) {
        let until = self.since_start(sent + LEASE);
        self.inner.lease_until.fetch_max(until, Ordering::AcqRel);
    }

    /// Applies the invalidations that have arrived; the tracking task calls it when one does.
    pub(crate) fn drain(&self) {
        drop(self.lock());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl State {
    fn forget(&mut self, key: &str) {
        self.entries.remove(key);
        self.filling.remove(key);
    }

    fn flush(&mut self) {
        self.entries.clear();
        self.filling.clear();
        self.epoch += 1;
        self.tracking = false;
    }

    /// Invalidations are applied by whoever takes the lock next, before it looks at an entry: the
    /// listener's connection delivered them before any reply that follows them.
    fn apply_invalidations(&mut self) {
        let mut flush = false;
        for receiver in &mut self.receivers {
            loop {
                match receiver.try_recv() {
                    // Redis sends FLUSHALL / FLUSHDB as an invalidation without keys.
                    Ok(invalidation) if invalidation.keys.is_empty() => flush = true,
                    Ok(invalidation) => {
                        for key in invalidation.keys {
                            if let Some(key) = key.as_str() {
                                self.entries.remove(key);
                                self.filling.remove(key);
                            }
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    // Messages were lost, or the listener is gone: nothing cached can be trusted.
                    Err(TryRecvError::Lagged(_) | TryRecvError::Closed) => {
                        flush = true;
                        break;
                    }
                }
            }
        }
        if flush {
            let receivers = std::mem::take(&mut self.receivers);
            self.flush();
            // After a flush the listeners stay: later invalidations still apply, but nothing is
            // served until the tracking task confirms a new epoch.
            self.receivers = receivers
                .into_iter()
                .map(|receiver| receiver.resubscribe())
                .collect();
        }
    }
}

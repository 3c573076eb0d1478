//! The near-cache's entries: sessions this process read recently, served without a round trip
//! while Redis vouches that they have not changed. Redis's client tracking tells us when a key we
//! read changes (`tracking.rs` listens, and hands the announcements over as [`Notice`]s, so this
//! file knows no Redis client); this file holds the entries and the rules that keep them honest:
//!
//! - an entry is served only while tracking is confirmed on and the lease (renewed by heartbeats
//!   that prove the invalidation path alive) has not run out;
//! - a read that fills an entry is marked before it is sent, and an invalidation, a flush or a
//!   reconnect that happens meanwhile poisons it, so a reply that raced a write is never stored;
//! - an entry never outlives the session's TTL as Redis last reported it;
//! - the entries are bounded in number and in bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::events::{Inbox, Notice, Signal};
use crate::metrics::NearCacheSnapshot;
use crate::store::{Changes, Loaded, Saved};

/// How long a proof that the invalidation path is alive lets entries be served. Redis frozen or
/// unreachable for longer than this means no hits: requests go to Redis and fail there.
pub(crate) const LEASE: Duration = Duration::from_secs(1);

/// The least an entry counts against the cache's bound, in bytes: the bound is this many bytes per
/// entry the store may hold, so that it bounds both the entries and their bytes.
pub(crate) const ENTRY_FLOOR: u64 = 1024;

/// Bytes an entry holds besides its key and text: the map, the entry itself, the cache's slot.
const ENTRY_OVERHEAD: u64 = 256;

/// What an entry counts against the cache's bound: its bytes, at least [`ENTRY_FLOOR`].
#[derive(Clone, Copy, Debug)]
struct EntryWeight;

impl quick_cache::Weighter<String, Arc<Loaded>> for EntryWeight {
    fn weight(&self, key: &String, entry: &Arc<Loaded>) -> u64 {
        let text: usize = entry
            .fields
            .iter()
            .map(|(field, value)| field.len() + value.len())
            .sum::<usize>()
            + entry.user.as_ref().map_or(0, String::len);
        (key.len() as u64 + text as u64 + ENTRY_OVERHEAD).max(ENTRY_FLOOR)
    }
}

/// A cached session after this process's own save of `changes`, which `saved` describes.
pub(crate) fn after_save(entry: &Loaded, changes: &Changes, saved: &Saved) -> Option<Loaded> {
    let Saved::Written {
        ttl_ms,
        expires_at,
        version,
        size,
    } = *saved
    else {
        return None;
    };
    let mut loaded = entry.clone();
    let fields = Arc::make_mut(&mut loaded.fields);
    if changes.clear {
        fields.clear();
    }
    for (field, value) in &changes.fields {
        match value {
            Some(value) => fields.insert(field.clone(), value.clone()),
            None => fields.remove(field),
        };
    }
    if let Some(user) = &changes.user {
        loaded.user = Some(user.clone());
    }
    Some(Loaded {
        ttl_ms,
        expires_at,
        version,
        size: Some(size),
        ..loaded
    })
}

/// A read in flight whose reply may become an entry. Dropped unfinished (its request was dropped
/// mid-read, as when the client hangs up), it takes its mark back and forgets the key, whose write
/// may have landed: the cache holds marks of reads in flight only.
#[derive(Debug)]
pub(crate) struct Fill {
    cache: NearCache,
    key: String,
    ticket: u64,
    epoch: u64,
    finished: bool,
}

impl Drop for Fill {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.cache.lock();
            if state.filling.get(&self.key) == Some(&self.ticket) {
                state.filling.remove(&self.key);
            }
            state.entries.remove(&self.key);
        }
    }
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
    entries: quick_cache::unsync::Cache<String, Arc<Loaded>, EntryWeight>,
    /// Keys being read, by the ticket of the latest read; an invalidation removes the key.
    filling: HashMap<String, u64>,
    next_ticket: u64,
    /// Bumped by every flush: a fill begun in an older epoch is never stored.
    epoch: u64,
    /// Tracking is confirmed on, for this epoch, on every connection that reads sessions.
    tracking: bool,
    /// Announcements not yet applied, one inbox per listening connection of this epoch.
    invalidations: Vec<Box<dyn Inbox>>,
    /// Events after which nothing cached can be trusted: the data connections' (for the store's
    /// life) and the listeners' (for their epoch).
    data_events: Vec<Signal>,
    listener_events: Vec<Signal>,
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
                    entries: quick_cache::unsync::Cache::with_weighter(
                        max_entries,
                        max_entries as u64 * ENTRY_FLOOR,
                        EntryWeight,
                    ),
                    filling: HashMap::new(),
                    next_ticket: 0,
                    epoch: 0,
                    tracking: false,
                    invalidations: Vec::new(),
                    data_events: Vec::new(),
                    listener_events: Vec::new(),
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
        state.apply_events();
        state
    }

    fn since_start(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.inner.started).as_millis()).unwrap_or(0)
    }

    /// The entry for `key`, if it may be served now: tracking on, lease current, TTL not run out.
    pub(crate) fn get(&self, key: &str, now_unix_ms: i64) -> Option<Arc<Loaded>> {
        let state = self.lock();
        if !self.serves(&state) {
            return None;
        }
        state
            .entries
            .get(key)
            .filter(|entry| entry.expires_at > now_unix_ms)
            .cloned()
    }

    /// The state `/metrics` shows.
    pub(crate) fn gauges(&self) -> NearCacheSnapshot {
        let state = self.lock();
        NearCacheSnapshot {
            entries: state.entries.len() as u64,
            bytes: state.entries.weight(),
            pending_fills: state.filling.len() as u64,
            serving: self.serves(&state),
        }
    }

    /// Tracking is on and the lease current.
    fn serves(&self, state: &State) -> bool {
        state.tracking
            && self.since_start(Instant::now()) < self.inner.lease_until.load(Ordering::Acquire)
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
            cache: self.clone(),
            key: key.to_owned(),
            ticket,
            epoch: state.epoch,
            finished: false,
        })
    }

    /// Ends a fill: keeps `entry` only if nothing invalidated the key, flushed the cache or began a
    /// later fill of it meanwhile; `None` (the session is gone, or the read failed) drops the key.
    pub(crate) fn finish_fill(&self, mut fill: Fill, entry: Option<Loaded>) {
        fill.finished = true;
        let key = std::mem::take(&mut fill.key);
        let mut state = self.lock();
        let current = state.filling.get(&key) == Some(&fill.ticket);
        if current {
            state.filling.remove(&key);
        }
        match entry {
            Some(entry) if current && state.tracking && state.epoch == fill.epoch => {
                state.entries.insert(key, Arc::new(entry));
            }
            _ => state.forget(&key),
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

    /// Flushes, and returns the epoch that [`confirm`](Self::confirm) may resume.
    pub(crate) fn pause(&self) -> u64 {
        let mut state = self.lock();
        state.flush();
        state.epoch
    }

    /// Flushes whenever one of `events` (a data connection's) fires, for as long as the store lives.
    pub(crate) fn watch(&self, events: Vec<Signal>) {
        self.lock().data_events.extend(events);
    }

    /// Starts a new epoch whose invalidations arrive on `invalidations`, and that ends when one of
    /// `events` (its listeners') fires. Nothing is served before [`confirm`](Self::confirm).
    pub(crate) fn begin_epoch(
        &self,
        invalidations: Vec<Box<dyn Inbox>>,
        events: Vec<Signal>,
    ) -> u64 {
        let mut state = self.lock();
        state.flush();
        state.invalidations = invalidations;
        state.listener_events = events;
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

    /// Forgets every entry and poisons every fill in flight; tracking stays on.
    fn clear(&mut self) {
        self.entries.clear();
        self.filling.clear();
        self.epoch += 1;
    }

    /// Clears, and serves nothing until tracking is confirmed again.
    fn flush(&mut self) {
        self.clear();
        self.tracking = false;
    }

    /// Invalidations and connection events are applied by whoever takes the lock next, before it
    /// looks at an entry: a connection delivers them before any reply that follows them.
    fn apply_events(&mut self) {
        let (mut clear, mut flush) = (false, false);
        for events in [&mut self.data_events, &mut self.listener_events] {
            for signal in events.iter_mut() {
                flush |= signal.fired();
            }
        }
        for inbox in &mut self.invalidations {
            while let Some(notice) = inbox.next() {
                match notice {
                    Notice::Changed(keys) => {
                        for key in &keys {
                            self.entries.remove(key);
                            self.filling.remove(key);
                        }
                    }
                    Notice::Cleared => clear = true,
                    Notice::Closed => {
                        flush = true;
                        break;
                    }
                }
            }
        }
        if flush {
            self.flush();
        } else if clear {
            self.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::broadcast;

    use super::super::events::Announcement;
    use super::*;
    use crate::store::Loaded;

    impl Announcement for Vec<String> {
        fn into_keys(self) -> Vec<String> {
            self
        }
    }

    fn entry(count: &str) -> Loaded {
        Loaded {
            fields: Arc::new([("count".to_owned(), count.to_owned())].into()),
            expires_at: i64::MAX,
            ..Loaded::default()
        }
    }

    fn invalidation(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    /// A cache serving, with `sender` as its listener.
    fn serving() -> (NearCache, broadcast::Sender<Vec<String>>) {
        let cache = NearCache::new(10);
        let (sender, receiver) = broadcast::channel(4);
        let epoch = cache.begin_epoch(vec![Box::new(receiver)], Vec::new());
        assert!(cache.confirm(epoch));
        cache.renew_lease(Instant::now());
        (cache, sender)
    }

    fn count(cache: &NearCache, key: &str) -> Option<String> {
        cache.get(key, 0).map(|entry| entry.fields["count"].clone())
    }

    #[test]
    fn a_fill_is_served_until_its_key_is_invalidated() {
        let (cache, sender) = serving();
        let fill = cache.begin_fill("k").unwrap();
        cache.finish_fill(fill, Some(entry("1")));
        assert_eq!(count(&cache, "k").as_deref(), Some("1"));
        sender.send(invalidation(&["k"])).unwrap();
        assert_eq!(count(&cache, "k"), None);
    }

    #[test]
    fn a_fill_dropped_unfinished_takes_its_mark_back_and_forgets_the_key() {
        let (cache, _tx) = serving();
        let fill = cache.begin_fill("k").unwrap();
        cache.finish_fill(fill, Some(entry("1")));
        for _ in 0..1000 {
            drop(cache.begin_fill("k").unwrap());
        }
        assert_eq!(cache.lock().filling.len(), 0, "no mark left behind");
        assert_eq!(count(&cache, "k"), None, "a write may have landed");
        // A later fill of the key is untouched by an earlier one dropped after it began.
        let earlier = cache.begin_fill("k").unwrap();
        let later = cache.begin_fill("k").unwrap();
        drop(earlier);
        cache.finish_fill(later, Some(entry("2")));
        assert_eq!(count(&cache, "k").as_deref(), Some("2"));
    }

    #[test]
    fn an_invalidation_during_the_read_poisons_the_fill() {
        let (cache, sender) = serving();
        let fill = cache.begin_fill("k").unwrap();
        sender.send(invalidation(&["k"])).unwrap();
        cache.finish_fill(fill, Some(entry("stale")));
        assert_eq!((count(&cache, "k"), cache.len()), (None, 0));
    }

    #[test]
    fn flushall_and_lost_messages_clear_everything_but_tracking_goes_on() {
        let (cache, sender) = serving();
        let in_flight = cache.begin_fill("a").unwrap();
        let fill = cache.begin_fill("b").unwrap();
        cache.finish_fill(fill, Some(entry("1")));
        sender.send(invalidation(&[])).unwrap();
        cache.finish_fill(in_flight, Some(entry("stale")));
        assert_eq!(cache.len(), 0);
        // Later reads are cached again.
        let fill = cache.begin_fill("b").unwrap();
        cache.finish_fill(fill, Some(entry("2")));
        assert_eq!(count(&cache, "b").as_deref(), Some("2"));
        // More messages than the channel holds: lost ones could have named any key.
        for _ in 0..5 {
            sender.send(invalidation(&["other"])).unwrap();
        }
        assert_eq!(count(&cache, "b"), None);
    }

    #[test]
    fn nothing_is_served_before_confirmation_after_a_flush_or_past_the_lease() {
        let cache = NearCache::new(10);
        assert!(
            cache.begin_fill("k").is_none(),
            "tracking not confirmed yet"
        );
        let (cache, _sender) = serving();
        let fill = cache.begin_fill("k").unwrap();
        cache.finish_fill(fill, Some(entry("1")));
        cache.flush();
        assert_eq!(count(&cache, "k"), None);
        assert!(cache.begin_fill("k").is_none());

        let (cache, _sender) = serving();
        let fill = cache.begin_fill("k").unwrap();
        cache.finish_fill(fill, Some(entry("1")));
        cache.inner.lease_until.store(0, Ordering::Release);
        assert_eq!(count(&cache, "k"), None, "the lease ran out");
    }

    #[test]
    fn an_entry_is_not_served_past_its_ttl() {
        let (cache, _sender) = serving();
        let fill = cache.begin_fill("k").unwrap();
        cache.finish_fill(
            fill,
            Some(Loaded {
                expires_at: 1_000,
                ..entry("1")
            }),
        );
        assert!(cache.get("k", 999).is_some());
        assert!(cache.get("k", 1_000).is_none());
    }

    #[test]
    fn the_number_of_entries_is_bounded() {
        let (cache, _sender) = serving();
        for i in 0..100 {
            let fill = cache.begin_fill(&format!("k{i}")).unwrap();
            cache.finish_fill(fill, Some(entry("1")));
        }
        assert!(cache.len() <= 10, "{} entries", cache.len());
        assert!(cache.gauges().bytes <= 10 * ENTRY_FLOOR);
    }

    #[test]
    fn the_bytes_are_bounded_whatever_the_entries_hold() {
        let (cache, _sender) = serving();
        let big = entry(&"9".repeat(64 * 1024));
        for i in 0..100 {
            let fill = cache.begin_fill(&format!("k{i}")).unwrap();
            cache.finish_fill(fill, Some(big.clone()));
        }
        let gauges = cache.gauges();
        assert!(gauges.bytes <= 10 * ENTRY_FLOOR, "{gauges:?}");
        // What the entries really hold, not only what the weigher says.
        let held = cache.len() as u64 * 64 * 1024;
        assert!(
            held <= 10 * ENTRY_FLOOR,
            "{} entries of 64 KiB",
            cache.len()
        );
        assert_eq!(gauges.pending_fills, 0);
        assert!(gauges.serving);
    }
}

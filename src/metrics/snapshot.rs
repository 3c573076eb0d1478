//! The point-in-time copy of the counters that [`Metrics::snapshot`] hands out.

use std::sync::atomic::Ordering;

use super::histogram::HistogramSnapshot;
use super::names::Counter;
use super::{Metrics, Op};

/// Store round-trip times by operation, in microseconds; failed calls included.
///
/// # Examples
///
/// ```
/// # let metrics = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default()).metrics();
/// let latency = metrics.snapshot().store_latency;
/// let saves = latency.create.count + latency.update.count + latency.cycle.count;
/// assert_eq!(saves, 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreLatency {
    /// Session reads (near-cache hits included, at a few microseconds).
    pub load: HistogramSnapshot,
    /// Delta saves to existing sessions.
    pub update: HistogramSnapshot,
    /// New sessions written (a retry after an id collision is part of the same call).
    pub create: HistogramSnapshot,
    /// Sessions moved to a fresh id.
    pub cycle: HistogramSnapshot,
    /// Sessions destroyed.
    pub destroy: HistogramSnapshot,
    /// Every session of a user destroyed
    /// ([`Session::destroy_everywhere`](crate::Session::destroy_everywhere)).
    pub destroy_everywhere: HistogramSnapshot,
    /// Atomic increments ([`Session::increment`](crate::Session::increment)).
    pub increment: HistogramSnapshot,
}

impl StoreLatency {
    pub(super) fn of(&self, op: Op) -> &HistogramSnapshot {
        match op {
            Op::Load => &self.load,
            Op::Update => &self.update,
            Op::Create => &self.create,
            Op::Cycle => &self.cycle,
            Op::Destroy => &self.destroy,
            Op::DestroyEverywhere => &self.destroy_everywhere,
            Op::Increment => &self.increment,
        }
    }
}

/// A point-in-time copy of [`Metrics`].
///
/// # Examples
///
/// ```
/// # let metrics = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default()).metrics();
/// let snapshot = metrics.snapshot();
/// println!("{} saves", snapshot.creates + snapshot.updates + snapshot.cycles);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Sessions read: from the store (one round trip), or from the near-cache (none).
    pub loads: u64,
    /// Loads that found no live session under the cookie's id.
    pub misses: u64,
    /// Loads that rolled the session's TTL.
    pub touches: u64,
    /// Loads that left the TTL alone because enough of it remained.
    pub touches_skipped: u64,
    /// Loads served by the near-cache, without a round trip (also counted as skipped touches).
    pub cache_hits: u64,
    /// New sessions written.
    pub creates: u64,
    /// Delta saves to existing sessions.
    pub updates: u64,
    /// Sessions moved to a fresh id.
    pub cycles: u64,
    /// Sessions destroyed (a logout-everywhere counts once).
    pub destroys: u64,
    /// Requests answered 503 because the store failed or timed out.
    pub store_errors: u64,
    /// Changes refused with 413 because the session would grow past its size limit.
    pub too_large: u64,
    /// Changes refused with 409 because the session ended while the request was using it.
    pub ended: u64,
    /// Requests that failed on a value: corrupt stored data, a value that does not serialize, a
    /// reserved key.
    pub invalid: u64,
    /// Requests that carried the session cookie more than once, and so were given no session.
    pub duplicate_cookies: u64,
    /// Lifecycle events not delivered to the hook
    /// ([`SessionLayer::with_hook`](crate::SessionLayer::with_hook)) because its queue was full.
    pub hook_events_dropped: u64,
    /// Store round-trip times by operation.
    pub store_latency: StoreLatency,
    /// Bytes of user fields (names and values) a session holds after each create, update or
    /// cycle.
    pub session_size: HistogramSnapshot,
    /// The near-cache's state, for a Redis store that has one.
    pub near_cache: Option<NearCacheSnapshot>,
}

/// The near-cache's state as the metrics are read: `/metrics`' `session_near_cache_*` gauges.
///
/// # Examples
///
/// ```
/// # let metrics = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default()).metrics();
/// // None: a memory store has no near-cache.
/// if let Some(cache) = metrics.snapshot().near_cache {
///     println!("{} sessions cached, serving: {}", cache.entries, cache.serving);
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearCacheSnapshot {
    /// Sessions held.
    pub entries: u64,
    /// Bytes counted against the cache's bound: an entry's key, fields and owner, at least 1 KiB
    /// each.
    pub bytes: u64,
    /// Reads in flight whose reply may become an entry.
    pub pending_fills: u64,
    /// Whether hits are served: tracking is confirmed on and its lease current.
    pub serving: bool,
}

impl Default for MetricsSnapshot {
    /// The snapshot of fresh metrics: every count zero.
    fn default() -> Self {
        Metrics::default().snapshot()
    }
}

impl Metrics {
    /// The counters as they are now.
    ///
    /// # Examples
    ///
    /// ```
    /// # let metrics = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default()).metrics();
    /// assert_eq!(metrics.snapshot().store_errors, 0);
    /// ```
    pub fn snapshot(&self) -> MetricsSnapshot {
        let c = &self.0;
        let read = |counter: Counter| c.counts[counter as usize].load(Ordering::Relaxed);
        let latency = |op: Op| c.latency[op as usize].snapshot();
        MetricsSnapshot {
            loads: read(Counter::Loads),
            misses: read(Counter::Misses),
            touches: read(Counter::Touches),
            touches_skipped: read(Counter::TouchesSkipped),
            cache_hits: read(Counter::CacheHits),
            creates: read(Counter::Creates),
            updates: read(Counter::Updates),
            cycles: read(Counter::Cycles),
            destroys: read(Counter::Destroys),
            store_errors: read(Counter::StoreErrors),
            too_large: read(Counter::TooLarge),
            ended: read(Counter::Ended),
            invalid: read(Counter::Invalid),
            duplicate_cookies: read(Counter::DuplicateCookies),
            hook_events_dropped: read(Counter::HookEventsDropped),
            store_latency: StoreLatency {
                load: latency(Op::Load),
                update: latency(Op::Update),
                create: latency(Op::Create),
                cycle: latency(Op::Cycle),
                destroy: latency(Op::Destroy),
                destroy_everywhere: latency(Op::DestroyEverywhere),
                increment: latency(Op::Increment),
            },
            session_size: c.size.snapshot(),
            near_cache: c.near_cache.as_ref().and_then(|read| read()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::recorded;
    use super::*;

    #[test]
    fn round_trips_are_kept_in_microseconds_and_sizes_in_bytes() {
        let snapshot = recorded().snapshot();
        let cycle = &snapshot.store_latency.cycle;
        // 0.1 ms is on the first bound; 3 ms is under 5 ms, not 2.5 ms; 2 s is past 1 s.
        assert_eq!(cycle.bounds[0], 100);
        assert_eq!(
            (cycle.buckets[0], cycle.buckets[4], cycle.buckets[5]),
            (1, 1, 2)
        );
        assert_eq!(cycle.buckets[12], 2);
        assert_eq!((cycle.count, cycle.sum), (3, 2_003_100));
        assert_eq!(snapshot.store_latency.load.count, 0);
        let size = &snapshot.session_size;
        assert_eq!(
            (size.buckets[0], size.buckets[1], size.count, size.sum),
            (0, 1, 1, 65)
        );
        assert_eq!(MetricsSnapshot::default(), Metrics::default().snapshot());
    }
}

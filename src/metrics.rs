//! Counters of what the layer did, for export to a monitoring system.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::Error;

/// Live counters of one [`SessionLayer`](crate::SessionLayer), shared by every request it serves.
///
/// # Examples
///
/// ```
/// use axum_redis_session::{MemoryStore, SessionLayer};
///
/// let layer = SessionLayer::new(MemoryStore::default());
/// let metrics = layer.metrics();
/// assert_eq!(metrics.snapshot().loads, 0);
/// assert!(metrics.to_prometheus().contains("session_loads_total 0"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Metrics(Arc<Counters>);

#[derive(Debug, Default)]
pub(crate) struct Counters {
    loads: AtomicU64,
    misses: AtomicU64,
    touches: AtomicU64,
    touches_skipped: AtomicU64,
    cache_hits: AtomicU64,
    creates: AtomicU64,
    updates: AtomicU64,
    cycles: AtomicU64,
    destroys: AtomicU64,
    store_errors: AtomicU64,
    too_large: AtomicU64,
    ended: AtomicU64,
    invalid: AtomicU64,
    duplicate_cookies: AtomicU64,
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
}

/// Which counter an event bumps.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    Load {
        found: bool,
        touched: bool,
        cached: bool,
    },
    Create,
    Update,
    Cycle,
    Destroy,
    DuplicateCookie,
    Failed(ErrorKind),
}

/// The kinds of session error the counters tell apart.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ErrorKind {
    Store,
    TooLarge,
    Ended,
    Invalid,
}

impl ErrorKind {
    pub(crate) fn of(error: &Error) -> Self {
        match error {
            Error::Store(_) => Self::Store,
            Error::TooLarge { .. } => Self::TooLarge,
            Error::Ended => Self::Ended,
            _ => Self::Invalid,
        }
    }
}

impl Metrics {
    pub(crate) fn record(&self, event: Event) {
        let c = &self.0;
        let counter = match event {
            Event::Load {
                found,
                touched,
                cached,
            } => {
                c.loads.fetch_add(1, Ordering::Relaxed);
                if cached {
                    c.cache_hits.fetch_add(1, Ordering::Relaxed);
                }
                match (found, touched) {
                    (false, _) => &c.misses,
                    (true, true) => &c.touches,
                    (true, false) => &c.touches_skipped,
                }
            }
            Event::Create => &c.creates,
            Event::Update => &c.updates,
            Event::Cycle => &c.cycles,
            Event::Destroy => &c.destroys,
            Event::DuplicateCookie => &c.duplicate_cookies,
            Event::Failed(ErrorKind::Store) => &c.store_errors,
            Event::Failed(ErrorKind::TooLarge) => &c.too_large,
            Event::Failed(ErrorKind::Ended) => &c.ended,
            Event::Failed(ErrorKind::Invalid) => &c.invalid,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

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
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
            loads: read(&c.loads),
            misses: read(&c.misses),
            touches: read(&c.touches),
            touches_skipped: read(&c.touches_skipped),
            cache_hits: read(&c.cache_hits),
            creates: read(&c.creates),
            updates: read(&c.updates),
            cycles: read(&c.cycles),
            destroys: read(&c.destroys),
            store_errors: read(&c.store_errors),
            too_large: read(&c.too_large),
            ended: read(&c.ended),
            invalid: read(&c.invalid),
            duplicate_cookies: read(&c.duplicate_cookies),
        }
    }

    /// The counters in the Prometheus text exposition format.
    ///
    /// # Examples
    ///
    /// ```
    /// # let metrics = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default()).metrics();
    /// let body = metrics.to_prometheus();
    /// assert!(body.contains("# TYPE session_saves_total counter"));
    /// ```
    pub fn to_prometheus(&self) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        counter(
            "session_loads_total",
            "Sessions read, from the store or the near-cache.",
            &[("", s.loads)],
        );
        counter(
            "session_near_cache_hits_total",
            "Loads served by the near-cache without a round trip.",
            &[("", s.cache_hits)],
        );
        counter(
            "session_load_outcomes_total",
            "Loads by outcome.",
            &[
                ("{outcome=\"miss\"}", s.misses),
                ("{outcome=\"touched\"}", s.touches),
                ("{outcome=\"touch_skipped\"}", s.touches_skipped),
            ],
        );
        counter(
            "session_saves_total",
            "Session writes by kind.",
            &[
                ("{kind=\"create\"}", s.creates),
                ("{kind=\"update\"}", s.updates),
                ("{kind=\"cycle\"}", s.cycles),
            ],
        );
        counter(
            "session_destroys_total",
            "Sessions destroyed.",
            &[("", s.destroys)],
        );
        counter(
            "session_errors_total",
            "Requests whose session work failed, by kind.",
            &[
                ("{kind=\"store\"}", s.store_errors),
                ("{kind=\"too_large\"}", s.too_large),
                ("{kind=\"ended\"}", s.ended),
                ("{kind=\"invalid\"}", s.invalid),
            ],
        );
        counter(
            "session_duplicate_cookies_total",
            "Requests that carried the session cookie more than once (given no session).",
            &[("", s.duplicate_cookies)],
        );
        out
    }
}

//! Counters and histograms of what the layer did, for export to a monitoring system: kept in
//! lock-free atomics, read as a [`MetricsSnapshot`], rendered as Prometheus text and, with the
//! `metrics` feature, also sent through the facade. Both outputs take their names from `names`.

#[cfg(feature = "metrics")]
mod facade;
mod histogram;
mod names;
mod prometheus;
mod snapshot;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use histogram::{Histogram, LATENCY_BOUNDS_US, SIZE_BOUNDS};
use names::Counter;

pub use histogram::HistogramSnapshot;
pub use snapshot::{MetricsSnapshot, NearCacheSnapshot, StoreLatency};

/// Reads the near-cache's state for a snapshot; `None` once the store is gone.
pub(crate) type NearCacheGauges = Arc<dyn Fn() -> Option<NearCacheSnapshot> + Send + Sync>;

/// Live counters and histograms of one [`SessionLayer`](crate::SessionLayer), shared by every
/// request it serves: lock-free atomics, read with [`snapshot`](Self::snapshot) or rendered with
/// [`to_prometheus`](Self::to_prometheus). With the `metrics` feature, every count and observation
/// also goes through the [`metrics`](https://docs.rs/metrics) facade.
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

struct Counters {
    /// Indexed by [`Counter`].
    counts: [AtomicU64; Counter::ALL.len()],
    /// Store round trips in microseconds, indexed by [`Op`].
    latency: [Histogram; Op::ALL.len()],
    /// Bytes of user fields after each save.
    size: Histogram,
    /// The store's near-cache, if it has one.
    near_cache: Option<NearCacheGauges>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: std::array::from_fn(|_| Histogram::new(LATENCY_BOUNDS_US)),
            size: Histogram::new(SIZE_BOUNDS),
            near_cache: None,
        }
    }
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("counts", &self.counts)
            .field("near_cache", &self.near_cache.is_some())
            .finish_non_exhaustive()
    }
}

/// A store call, as the round-trip histograms tell them apart.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Load,
    Update,
    Create,
    Cycle,
    Destroy,
    DestroyEverywhere,
    Increment,
}

impl Op {
    const ALL: [Self; 7] = [
        Self::Load,
        Self::Update,
        Self::Create,
        Self::Cycle,
        Self::Destroy,
        Self::DestroyEverywhere,
        Self::Increment,
    ];

    /// The value of the round-trip histogram's label.
    fn name(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Update => "update",
            Self::Create => "create",
            Self::Cycle => "cycle",
            Self::Destroy => "destroy",
            Self::DestroyEverywhere => "destroy_everywhere",
            Self::Increment => "increment",
        }
    }
}

/// What happened, as the counters count it.
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
    /// A lifecycle event the hook's queue had no room for.
    HookEventDropped,
    Failed(ErrorKind),
}

impl Event {
    /// The counters the event bumps: a load counts as a load, maybe as a near-cache hit, and by
    /// its outcome.
    fn counters(self) -> impl Iterator<Item = Counter> {
        let (first, second, third) = match self {
            Self::Load {
                found,
                touched,
                cached,
            } => {
                let outcome = match (found, touched) {
                    (false, _) => Counter::Misses,
                    (true, true) => Counter::Touches,
                    (true, false) => Counter::TouchesSkipped,
                };
                (
                    Counter::Loads,
                    cached.then_some(Counter::CacheHits),
                    Some(outcome),
                )
            }
            Self::Create => (Counter::Creates, None, None),
            Self::Update => (Counter::Updates, None, None),
            Self::Cycle => (Counter::Cycles, None, None),
            Self::Destroy => (Counter::Destroys, None, None),
            Self::DuplicateCookie => (Counter::DuplicateCookies, None, None),
            Self::HookEventDropped => (Counter::HookEventsDropped, None, None),
            Self::Failed(ErrorKind::Store) => (Counter::StoreErrors, None, None),
            Self::Failed(ErrorKind::TooLarge) => (Counter::TooLarge, None, None),
            Self::Failed(ErrorKind::Ended) => (Counter::Ended, None, None),
            Self::Failed(ErrorKind::Invalid) => (Counter::Invalid, None, None),
        };
        [Some(first), second, third].into_iter().flatten()
    }
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
    /// Metrics that also read `near_cache`'s state (the store's near-cache).
    pub(crate) fn with_near_cache(near_cache: Option<NearCacheGauges>) -> Self {
        Self(Arc::new(Counters {
            near_cache,
            ..Counters::default()
        }))
    }
}

impl Metrics {
    pub(crate) fn record(&self, event: Event) {
        for counter in event.counters() {
            self.0.counts[counter as usize].fetch_add(1, Ordering::Relaxed);
            #[cfg(feature = "metrics")]
            facade::count(counter);
        }
    }

    /// One store call's round trip, whatever its outcome.
    pub(crate) fn record_latency(&self, op: Op, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.0.latency[op as usize].observe(micros);
        #[cfg(feature = "metrics")]
        facade::record_latency(op, elapsed);
    }

    /// The bytes of user fields a session holds after a save.
    pub(crate) fn record_size(&self, bytes: usize) {
        let bytes = bytes as u64;
        self.0.size.observe(bytes);
        #[cfg(feature = "metrics")]
        facade::record_size(bytes);
    }

    /// Runs one store call, timed: its round trip goes to `op`'s histogram, whatever the outcome;
    /// on success, `done` names the event to count and the debug line to log (if the outcome
    /// deserves one), and the line carries the session's `key` prefix and the call's `elapsed`
    /// time. The session handle and the end of the request both call the store through this.
    pub(crate) async fn observe<T>(
        &self,
        op: Op,
        key: Option<&str>,
        call: impl Future<Output = Result<T, Error>>,
        done: impl FnOnce(&T) -> Option<(Event, &'static str)>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let result = call.await;
        let elapsed = started.elapsed();
        self.record_latency(op, elapsed);
        let value = result?;
        if let Some((event, message)) = done(&value) {
            self.record(event);
            tracing::debug!(key, ?elapsed, "{message}");
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::header::{COOKIE, SET_COOKIE};
    use axum::http::Request;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;
    use crate::{MemoryStore, Session, SessionLayer};

    /// Routes that each make one kind of store call.
    pub(super) fn app(layer: SessionLayer) -> Router {
        // A value of `n` characters is stored as `n + 2` bytes of JSON, under the 1-byte key `k`.
        let put =
            |n: usize| move |session: Session| async move { session.insert("k", "x".repeat(n)) };
        Router::new()
            .route("/small", get(put(10)))
            .route("/big", get(put(100)))
            .route(
                "/read",
                get(|session: Session| async move {
                    session
                        .get::<String>("k")
                        .await
                        .map(Option::unwrap_or_default)
                }),
            )
            .route(
                "/increment",
                get(|session: Session| async move {
                    session.increment("n", 1).await.map(|n| n.to_string())
                }),
            )
            .route(
                "/login",
                get(|session: Session| async move { session.login("alice") }),
            )
            .route(
                "/everywhere",
                get(|session: Session| async move {
                    session
                        .destroy_everywhere()
                        .await
                        .map(Option::unwrap_or_default)
                }),
            )
            .route(
                "/logout",
                get(|session: Session| async move { session.destroy() }),
            )
            .layer(layer)
    }

    /// One GET with the cookie pair `cookie`; the cookie pair the response sets, if any.
    pub(super) async fn request(app: &Router, path: &str, cookie: Option<&str>) -> Option<String> {
        let mut request = Request::get(path);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let set = response.headers().get(SET_COOKIE)?.to_str().unwrap();
        set.split(';').next().map(str::to_owned)
    }

    /// Three cycles (0.1 ms, 3 ms, 2 s) and one save of 65 bytes.
    pub(super) fn recorded() -> Metrics {
        let metrics = Metrics::default();
        metrics.record_latency(Op::Cycle, Duration::from_micros(100));
        metrics.record_latency(Op::Cycle, Duration::from_millis(3));
        metrics.record_latency(Op::Cycle, Duration::from_secs(2));
        metrics.record_size(65);
        metrics
    }

    #[test]
    fn ops_index_the_latency_histograms_in_order() {
        for (i, op) in Op::ALL.into_iter().enumerate() {
            assert_eq!(op as usize, i, "{op:?}");
        }
    }

    #[tokio::test]
    async fn each_store_call_is_timed_under_its_operation_and_each_save_sized() {
        let layer = SessionLayer::new(MemoryStore::default());
        let metrics = layer.metrics();
        let app = app(layer);
        let first = request(&app, "/small", None).await; // create: 13 bytes
        request(&app, "/big", first.as_deref()).await; // update, no load: 103 bytes
        request(&app, "/increment", first.as_deref()).await; // 105 bytes, not a save
        let second = request(&app, "/login", first.as_deref()).await; // cycle: 105 bytes
        request(&app, "/everywhere", second.as_deref()).await; // load, then destroy everywhere
        let third = request(&app, "/small", None).await; // create: 13 bytes
        request(&app, "/logout", third.as_deref()).await; // destroy

        let snapshot = metrics.snapshot();
        let latency = snapshot.store_latency;
        let counts = Op::ALL.map(|op| (op.name(), latency.of(op).count));
        assert_eq!(
            counts,
            [
                ("load", 1),
                ("update", 1),
                ("create", 2),
                ("cycle", 1),
                ("destroy", 1),
                ("destroy_everywhere", 1),
                ("increment", 1),
            ]
        );
        let size = snapshot.session_size;
        assert_eq!(
            (size.buckets[0], size.buckets[1], size.count, size.sum),
            (2, 4, 4, 13 + 103 + 105 + 13),
            "two saves of at most 64 bytes, two of at most 128"
        );
    }
}

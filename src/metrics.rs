//! Counters and histograms of what the layer did, for export to a monitoring system.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;

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

/// Upper bounds of the store round-trip buckets, in microseconds: 0.1 ms to 1 s.
const LATENCY_BOUNDS_US: [u64; 13] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// Upper bounds of the session-size buckets, in bytes: 64 B to 64 KiB.
const SIZE_BOUNDS: [u64; 11] = [
    64, 128, 256, 512, 1_024, 2_048, 4_096, 8_192, 16_384, 32_768, 65_536,
];

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
    /// Store round trips in microseconds, indexed by [`Op`].
    latency: [Histogram<13>; Op::ALL.len()],
    /// Bytes of user fields after each save.
    size: Histogram<11>,
}

/// A fixed-bucket histogram, lock-free: one counter per bucket (not cumulative), one for the values
/// above the last bound, and their sum. The bounds are the caller's constant.
#[derive(Debug)]
struct Histogram<const N: usize> {
    buckets: [AtomicU64; N],
    above: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            above: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }
}

impl<const N: usize> Histogram<N> {
    fn observe(&self, bounds: &[u64; N], value: u64) {
        let bucket = bounds
            .iter()
            .position(|&bound| value <= bound)
            .map_or(&self.above, |i| &self.buckets[i]);
        bucket.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// The count is the buckets' total, so that it always equals the `+Inf` bucket.
    fn snapshot(&self, bounds: &[u64; N]) -> HistogramSnapshot<N> {
        let mut total = 0;
        let buckets = std::array::from_fn(|i| {
            total += self.buckets[i].load(Ordering::Relaxed);
            total
        });
        HistogramSnapshot {
            bounds: *bounds,
            buckets,
            count: total + self.above.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time copy of one histogram of [`Metrics`], with cumulative buckets as Prometheus has
/// them.
///
/// # Examples
///
/// ```
/// # let metrics = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default()).metrics();
/// let sizes = metrics.snapshot().session_size;
/// // How many saves left a session of at most 1 KiB:
/// let small = sizes.bounds.iter().position(|&b| b == 1024).map(|i| sizes.buckets[i]);
/// assert_eq!(small, Some(0));
/// assert_eq!(sizes.count, 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistogramSnapshot<const N: usize> {
    /// The buckets' inclusive upper bounds, ascending, in the histogram's unit: microseconds for
    /// round trips, bytes for sizes.
    pub bounds: [u64; N],
    /// Cumulative counts: `buckets[i]` observations were at most `bounds[i]`.
    pub buckets: [u64; N],
    /// Observations in all, those above the last bound included (Prometheus's `+Inf` bucket).
    pub count: u64,
    /// The observations' sum, in the histogram's unit.
    pub sum: u64,
}

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreLatency {
    /// Session reads (near-cache hits included, at a few microseconds).
    pub load: HistogramSnapshot<13>,
    /// Delta saves to existing sessions.
    pub update: HistogramSnapshot<13>,
    /// New sessions written (a retry after an id collision is part of the same call).
    pub create: HistogramSnapshot<13>,
    /// Sessions moved to a fresh id.
    pub cycle: HistogramSnapshot<13>,
    /// Sessions destroyed.
    pub destroy: HistogramSnapshot<13>,
    /// Every session of a user destroyed
    /// ([`Session::destroy_everywhere`](crate::Session::destroy_everywhere)).
    pub destroy_everywhere: HistogramSnapshot<13>,
    /// Atomic increments ([`Session::increment`](crate::Session::increment)).
    pub increment: HistogramSnapshot<13>,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Store round-trip times by operation.
    pub store_latency: StoreLatency,
    /// Bytes of user fields (names and values) a session holds after each create, update or
    /// cycle.
    pub session_size: HistogramSnapshot<11>,
}

impl Default for MetricsSnapshot {
    /// The snapshot of fresh metrics: every count zero.
    fn default() -> Self {
        Metrics::default().snapshot()
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

    /// The `op` label.
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
        #[cfg(feature = "metrics")]
        facade_count(event);
    }

    /// One store call's round trip, whatever its outcome.
    pub(crate) fn record_latency(&self, op: Op, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.0.latency[op as usize].observe(&LATENCY_BOUNDS_US, micros);
        #[cfg(feature = "metrics")]
        ::metrics::histogram!("session_store_seconds", "op" => op.name()).record(elapsed);
    }

    /// The bytes of user fields a session holds after a save.
    pub(crate) fn record_size(&self, bytes: usize) {
        let bytes = bytes as u64;
        self.0.size.observe(&SIZE_BOUNDS, bytes);
        #[cfg(feature = "metrics")]
        ::metrics::histogram!("session_size_bytes").record(bytes as f64);
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
        let latency = |op: Op| c.latency[op as usize].snapshot(&LATENCY_BOUNDS_US);
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
            store_latency: StoreLatency {
                load: latency(Op::Load),
                update: latency(Op::Update),
                create: latency(Op::Create),
                cycle: latency(Op::Cycle),
                destroy: latency(Op::Destroy),
                destroy_everywhere: latency(Op::DestroyEverywhere),
                increment: latency(Op::Increment),
            },
            session_size: c.size.snapshot(&SIZE_BOUNDS),
        }
    }

    /// The counters and histograms in the Prometheus text exposition format. Round trips are in
    /// seconds (`session_store_seconds{op}`), sizes in bytes (`session_size_bytes`).
    ///
    /// # Examples
    ///
    /// ```
    /// # let metrics = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default()).metrics();
    /// let body = metrics.to_prometheus();
    /// assert!(body.contains("# TYPE session_saves_total counter"));
    /// assert!(body.contains("session_store_seconds_bucket{op=\"load\",le=\"0.001\"} 0"));
    /// assert!(body.contains("session_size_bytes_count 0"));
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
        let by_op: Vec<_> = Op::ALL
            .iter()
            .map(|&op| (format!("op=\"{}\"", op.name()), s.store_latency.of(op)))
            .collect();
        write_histogram(
            &mut out,
            "session_store_seconds",
            "Store round-trip time by operation, failed calls included.",
            1e6,
            &by_op,
        );
        write_histogram(
            &mut out,
            "session_size_bytes",
            "Bytes of user fields a session holds after each save.",
            1.0,
            &[(String::new(), &s.session_size)],
        );
        out
    }
}

impl StoreLatency {
    fn of(&self, op: Op) -> &HistogramSnapshot<13> {
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

/// One histogram family in the Prometheus text format: per sample (its labels, without braces),
/// cumulative `_bucket`s ending with `+Inf`, then `_sum` and `_count`. Values are divided by
/// `divisor` (microseconds to seconds).
fn write_histogram<const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    divisor: f64,
    samples: &[(String, &HistogramSnapshot<N>)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (labels, histogram) in samples {
        let (braced, leading) = if labels.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{{{labels}}}"), format!("{labels},"))
        };
        for (&bound, count) in histogram.bounds.iter().zip(&histogram.buckets) {
            let le = bound as f64 / divisor;
            let _ = writeln!(out, "{name}_bucket{{{leading}le=\"{le}\"}} {count}");
        }
        let count = histogram.count;
        let sum = histogram.sum as f64 / divisor;
        let _ = writeln!(out, "{name}_bucket{{{leading}le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{braced} {sum}");
        let _ = writeln!(out, "{name}_count{braced} {count}");
    }
}

/// The same counts as [`Metrics::record`] keeps, through the `metrics` facade, under the names of
/// [`Metrics::to_prometheus`].
#[cfg(feature = "metrics")]
fn facade_count(event: Event) {
    use ::metrics::counter;
    match event {
        Event::Load {
            found,
            touched,
            cached,
        } => {
            counter!("session_loads_total").increment(1);
            if cached {
                counter!("session_near_cache_hits_total").increment(1);
            }
            let outcome = match (found, touched) {
                (false, _) => "miss",
                (true, true) => "touched",
                (true, false) => "touch_skipped",
            };
            counter!("session_load_outcomes_total", "outcome" => outcome).increment(1);
        }
        Event::Create => counter!("session_saves_total", "kind" => "create").increment(1),
        Event::Update => counter!("session_saves_total", "kind" => "update").increment(1),
        Event::Cycle => counter!("session_saves_total", "kind" => "cycle").increment(1),
        Event::Destroy => counter!("session_destroys_total").increment(1),
        Event::DuplicateCookie => counter!("session_duplicate_cookies_total").increment(1),
        Event::Failed(kind) => {
            let kind = match kind {
                ErrorKind::Store => "store",
                ErrorKind::TooLarge => "too_large",
                ErrorKind::Ended => "ended",
                ErrorKind::Invalid => "invalid",
            };
            counter!("session_errors_total", "kind" => kind).increment(1);
        }
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
    fn app(layer: SessionLayer) -> Router {
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
    async fn request(app: &Router, path: &str, cookie: Option<&str>) -> Option<String> {
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

    /// Asserts that `body` has this exact line.
    fn assert_line(body: &str, line: &str) {
        assert!(body.lines().any(|l| l == line), "no `{line}` in:\n{body}");
    }

    /// Three cycles (0.1 ms, 3 ms, 2 s) and one save of 65 bytes.
    fn recorded() -> Metrics {
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

    #[test]
    fn a_value_lands_in_the_first_bucket_whose_bound_holds_it() {
        let histogram = Histogram::<3>::default();
        let bounds = [10, 20, 30];
        for value in [0, 10, 11, 20, 31, 1_000] {
            histogram.observe(&bounds, value);
        }
        let snapshot = histogram.snapshot(&bounds);
        assert_eq!(snapshot.buckets, [2, 4, 4], "cumulative");
        assert_eq!((snapshot.count, snapshot.sum), (6, 1_072));
    }

    #[test]
    fn round_trips_are_kept_in_microseconds_and_sizes_in_bytes() {
        let snapshot = recorded().snapshot();
        let cycle = snapshot.store_latency.cycle;
        // 0.1 ms is on the first bound; 3 ms is under 5 ms, not 2.5 ms; 2 s is past 1 s.
        assert_eq!(cycle.bounds[0], 100);
        assert_eq!(
            (cycle.buckets[0], cycle.buckets[4], cycle.buckets[5]),
            (1, 1, 2)
        );
        assert_eq!(cycle.buckets[12], 2);
        assert_eq!((cycle.count, cycle.sum), (3, 2_003_100));
        assert_eq!(snapshot.store_latency.load.count, 0);
        let size = snapshot.session_size;
        assert_eq!(
            (size.buckets[0], size.buckets[1], size.count, size.sum),
            (0, 1, 1, 65)
        );
        assert_eq!(MetricsSnapshot::default(), Metrics::default().snapshot());
    }

    #[test]
    fn prometheus_histograms_are_cumulative_in_seconds_and_bytes() {
        let body = recorded().to_prometheus();
        assert_line(&body, "# TYPE session_store_seconds histogram");
        for line in [
            r#"session_store_seconds_bucket{op="cycle",le="0.0001"} 1"#,
            r#"session_store_seconds_bucket{op="cycle",le="0.0025"} 1"#,
            r#"session_store_seconds_bucket{op="cycle",le="0.005"} 2"#,
            r#"session_store_seconds_bucket{op="cycle",le="1"} 2"#,
            r#"session_store_seconds_bucket{op="cycle",le="+Inf"} 3"#,
            r#"session_store_seconds_sum{op="cycle"} 2.0031"#,
            r#"session_store_seconds_count{op="cycle"} 3"#,
            r#"session_store_seconds_bucket{op="destroy_everywhere",le="+Inf"} 0"#,
            r#"session_store_seconds_count{op="load"} 0"#,
            "# TYPE session_size_bytes histogram",
            r#"session_size_bytes_bucket{le="64"} 0"#,
            r#"session_size_bytes_bucket{le="128"} 1"#,
            r#"session_size_bytes_bucket{le="65536"} 1"#,
            r#"session_size_bytes_bucket{le="+Inf"} 1"#,
            "session_size_bytes_sum 65",
            "session_size_bytes_count 1",
        ] {
            assert_line(&body, line);
        }
        // Every series' buckets only grow, 13 bounds and `+Inf` per operation.
        for op in Op::ALL {
            let prefix = format!("session_store_seconds_bucket{{op=\"{}\",", op.name());
            let counts: Vec<u64> = body
                .lines()
                .filter_map(|l| l.strip_prefix(&prefix))
                .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
                .collect();
            assert_eq!(counts.len(), 14, "{op:?}");
            assert!(
                counts.windows(2).all(|w| w[0] <= w[1]),
                "{op:?}: {counts:?}"
            );
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

    #[cfg(feature = "metrics")]
    #[test]
    fn the_facade_receives_the_counters_and_histograms_under_the_prometheus_names() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let layer = SessionLayer::new(MemoryStore::default());
        let metrics = layer.metrics();
        let app = app(layer);
        ::metrics::with_local_recorder(&recorder, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let cookie = request(&app, "/small", None).await;
                request(&app, "/read", cookie.as_deref()).await;
                request(&app, "/big", cookie.as_deref()).await;
            });
        });

        let received: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| (key.key().clone(), value))
            .collect();
        let find = |name: &str, label: Option<(&str, &str)>| {
            let found = received.iter().find(|(key, _)| {
                let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
                key.name() == name && labels == Vec::from_iter(label)
            });
            match found {
                Some((_, DebugValue::Counter(n))) => vec![*n as f64],
                Some((_, DebugValue::Histogram(values))) => values.iter().map(|v| v.0).collect(),
                other => panic!("{name} {label:?}: {other:?} in {received:?}"),
            }
        };
        assert_eq!(find("session_loads_total", None), [1.0]);
        assert_eq!(find("session_saves_total", Some(("kind", "create"))), [1.0]);
        assert_eq!(find("session_saves_total", Some(("kind", "update"))), [1.0]);
        assert_eq!(find("session_size_bytes", None), [13.0, 103.0]);
        for op in ["load", "create", "update"] {
            let seconds = find("session_store_seconds", Some(("op", op)));
            assert!(
                matches!(seconds.as_slice(), [s] if *s >= 0.0 && *s < 1.0),
                "{op}: {seconds:?}"
            );
        }
        // The facade and the Prometheus text name every metric alike.
        let body = metrics.to_prometheus();
        for (key, _) in &received {
            assert!(body.contains(&format!("# TYPE {} ", key.name())), "{key:?}");
        }
    }
}

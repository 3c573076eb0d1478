//! Fixed-bucket histograms: the lock-free recorder and the copy a snapshot hands out.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the store round-trip buckets, in microseconds: 0.1 ms to 1 s.
pub(super) const LATENCY_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// Upper bounds of the session-size buckets, in bytes: 64 B to 64 KiB.
pub(super) const SIZE_BOUNDS: &[u64] = &[
    64, 128, 256, 512, 1_024, 2_048, 4_096, 8_192, 16_384, 32_768, 65_536,
];

/// A fixed-bucket histogram, lock-free: one counter per bucket (not cumulative), one for the values
/// above the last bound, and their sum.
#[derive(Debug)]
pub(super) struct Histogram {
    bounds: &'static [u64],
    buckets: Box<[AtomicU64]>,
    above: AtomicU64,
    sum: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these ascending bucket bounds.
    pub(super) fn new(bounds: &'static [u64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            above: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    pub(super) fn observe(&self, value: u64) {
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| value <= bound)
            .map_or(&self.above, |i| &self.buckets[i]);
        bucket.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// The count is the buckets' total, so that it always equals the `+Inf` bucket.
    pub(super) fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let buckets = self
            .buckets
            .iter()
            .map(|bucket| {
                total += bucket.load(Ordering::Relaxed);
                total
            })
            .collect();
        HistogramSnapshot {
            bounds: self.bounds,
            buckets,
            count: total + self.above.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time copy of one histogram of [`Metrics`](crate::Metrics), with cumulative buckets as
/// Prometheus has them.
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
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistogramSnapshot {
    /// The buckets' inclusive upper bounds, ascending, in the histogram's unit: microseconds for
    /// round trips, bytes for sizes.
    pub bounds: &'static [u64],
    /// Cumulative counts, one per bound: `buckets[i]` observations were at most `bounds[i]`.
    pub buckets: Vec<u64>,
    /// Observations in all, those above the last bound included (Prometheus's `+Inf` bucket).
    pub count: u64,
    /// The observations' sum, in the histogram's unit.
    pub sum: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_lands_in_the_first_bucket_whose_bound_holds_it() {
        let histogram = Histogram::new(&[10, 20, 30]);
        for value in [0, 10, 11, 20, 31, 1_000] {
            histogram.observe(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets, [2, 4, 4], "cumulative");
        assert_eq!((snapshot.count, snapshot.sum), (6, 1_072));
    }
}

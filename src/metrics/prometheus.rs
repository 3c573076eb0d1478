//! The counters and histograms in the Prometheus text exposition format.

use std::fmt::Write as _;

use super::histogram::HistogramSnapshot;
use super::names::{
    Counter, Family, Kind, FAMILIES, NEAR_CACHE_BYTES, NEAR_CACHE_ENTRIES,
    NEAR_CACHE_PENDING_FILLS, NEAR_CACHE_SERVING, STORE_SECONDS,
};
use super::{Metrics, MetricsSnapshot, NearCacheSnapshot, Op};

impl Metrics {
    /// The counters and histograms in the Prometheus text exposition format. Round trips are in
    /// seconds (`session_store_seconds{op}`), sizes in bytes (`session_size_bytes`); with a
    /// near-cache, its gauges (`session_near_cache_*`).
    ///
    /// # Examples
    ///
    /// ```
    /// # let metrics = axum_redis_session::SessionLayer::new(axum_redis_session::MemoryStore::default()).metrics();
    /// let body = metrics.to_prometheus();
    /// assert!(body.contains("# TYPE session_saves_total counter"));
    /// assert!(body.contains("session_store_seconds_bucket{op=\"load\",le=\"0.001\"} 0"));
    /// assert!(body.contains("session_size_bytes_count 0"));
    /// // A memory store has no near-cache, so no near-cache gauges.
    /// assert!(!body.contains("session_near_cache_entries"));
    /// ```
    pub fn to_prometheus(&self) -> String {
        let snapshot = self.snapshot();
        let mut out = String::new();
        for family in FAMILIES {
            // The near-cache's gauges exist only with a near-cache.
            if family.kind == Kind::Gauge && snapshot.near_cache.is_none() {
                continue;
            }
            let name = family.name;
            let _ = writeln!(
                out,
                "# HELP {name} {}\n# TYPE {name} {}",
                family.help,
                family.kind.as_str()
            );
            match family.kind {
                Kind::Counter => write_counters(&mut out, family, &snapshot),
                Kind::Histogram => write_histograms(&mut out, family, &snapshot),
                Kind::Gauge => {
                    if let Some(cache) = &snapshot.near_cache {
                        let _ = writeln!(out, "{name} {}", gauge(family, cache));
                    }
                }
            }
        }
        out
    }
}

/// The series of one counter family, in [`Counter::ALL`]'s order.
fn write_counters(out: &mut String, family: &Family, snapshot: &MetricsSnapshot) {
    let series = Counter::ALL
        .into_iter()
        .map(|counter| (counter, counter.series()))
        .filter(|(_, (of, _))| *of == family);
    for (counter, (_, value)) in series {
        let labels = match (family.label, value) {
            (Some(label), Some(value)) => format!("{{{label}=\"{value}\"}}"),
            _ => String::new(),
        };
        let _ = writeln!(out, "{}{labels} {}", family.name, count(snapshot, counter));
    }
}

/// The value of a gauge family.
fn gauge(family: &Family, cache: &NearCacheSnapshot) -> u64 {
    match *family {
        NEAR_CACHE_ENTRIES => cache.entries,
        NEAR_CACHE_BYTES => cache.bytes,
        NEAR_CACHE_PENDING_FILLS => cache.pending_fills,
        NEAR_CACHE_SERVING => u64::from(cache.serving),
        _ => unreachable!("{} is not a gauge", family.name),
    }
}

fn count(s: &MetricsSnapshot, counter: Counter) -> u64 {
    match counter {
        Counter::Loads => s.loads,
        Counter::CacheHits => s.cache_hits,
        Counter::Misses => s.misses,
        Counter::Touches => s.touches,
        Counter::TouchesSkipped => s.touches_skipped,
        Counter::Creates => s.creates,
        Counter::Updates => s.updates,
        Counter::Cycles => s.cycles,
        Counter::Destroys => s.destroys,
        Counter::StoreErrors => s.store_errors,
        Counter::TooLarge => s.too_large,
        Counter::Ended => s.ended,
        Counter::Invalid => s.invalid,
        Counter::DuplicateCookies => s.duplicate_cookies,
        Counter::HookEventsDropped => s.hook_events_dropped,
    }
}

/// The series of one histogram family: round trips by operation, or the session sizes.
fn write_histograms(out: &mut String, family: &Family, snapshot: &MetricsSnapshot) {
    let is_latency = *family == STORE_SECONDS;
    let series: Vec<(Option<&str>, &HistogramSnapshot)> = if is_latency {
        let latency = &snapshot.store_latency;
        Op::ALL
            .iter()
            .map(|&op| (Some(op.name()), latency.of(op)))
            .collect()
    } else {
        vec![(None, &snapshot.session_size)]
    };
    // Round trips are recorded in microseconds, and Prometheus's base unit is the second.
    let divisor = if is_latency { 1e6 } else { 1.0 };
    for (value, histogram) in series {
        let labels = match (family.label, value) {
            (Some(label), Some(value)) => format!("{label}=\"{value}\""),
            _ => String::new(),
        };
        write_histogram(out, family.name, &labels, divisor, histogram);
    }
}

/// One histogram series: cumulative `_bucket`s ending with `+Inf`, then `_sum` and `_count`.
/// `labels` come without braces; values are divided by `divisor`.
fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    divisor: f64,
    histogram: &HistogramSnapshot,
) {
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

#[cfg(test)]
mod tests {
    use super::super::tests::recorded;
    use super::*;

    /// Asserts that `body` has this exact line.
    fn assert_line(body: &str, line: &str) {
        assert!(body.lines().any(|l| l == line), "no `{line}` in:\n{body}");
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
}

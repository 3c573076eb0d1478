//! The same counts and observations through the [`metrics`](https://docs.rs/metrics) facade,
//! under the names of the Prometheus text (both read [`names`](super::names)).

use std::time::Duration;

use ::metrics::Label;

use super::names::{Counter, Family, SIZE_BYTES, STORE_SECONDS};
use super::Op;

pub(super) fn count(counter: Counter) {
    let (family, value) = counter.series();
    ::metrics::counter!(family.name, labels(family, value)).increment(1);
}

pub(super) fn record_latency(op: Op, elapsed: Duration) {
    let labels = labels(&STORE_SECONDS, Some(op.name()));
    ::metrics::histogram!(STORE_SECONDS.name, labels).record(elapsed);
}

pub(super) fn record_size(bytes: u64) {
    ::metrics::histogram!(SIZE_BYTES.name, labels(&SIZE_BYTES, None)).record(bytes as f64);
}

/// The family's label with this series' value, as the Prometheus text writes it.
fn labels(family: &Family, value: Option<&'static str>) -> Vec<Label> {
    family
        .label
        .zip(value)
        .map(|(label, value)| Label::from_static_parts(label, value))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::super::tests::{app, request};
    use crate::{MemoryStore, SessionLayer};

    #[test]
    fn the_facade_receives_the_counters_and_histograms_under_the_prometheus_names() {
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

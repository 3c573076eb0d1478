//! The one table of metric names: every family with its help text, type and label, and every
//! counter series with its label value. Both the Prometheus text and the `metrics` facade read
//! them from here, so the two outputs cannot drift apart.

/// How a family is exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Histogram,
    /// A state read when the metrics are (the near-cache's); not sent to the `metrics` facade.
    Gauge,
}

impl Kind {
    /// The word of Prometheus's `# TYPE` line.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Histogram => "histogram",
            Self::Gauge => "gauge",
        }
    }
}

/// One metric family: what both outputs call it, and the label that tells its series apart.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Family {
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) kind: Kind,
    pub(super) label: Option<&'static str>,
}

const fn family(
    name: &'static str,
    help: &'static str,
    kind: Kind,
    label: Option<&'static str>,
) -> Family {
    Family {
        name,
        help,
        kind,
        label,
    }
}

pub(super) const LOADS: Family = family(
    "session_loads_total",
    "Sessions read, from the store or the near-cache.",
    Kind::Counter,
    None,
);
pub(super) const NEAR_CACHE_HITS: Family = family(
    "session_near_cache_hits_total",
    "Loads served by the near-cache without a round trip.",
    Kind::Counter,
    None,
);
pub(super) const LOAD_OUTCOMES: Family = family(
    "session_load_outcomes_total",
    "Loads by outcome.",
    Kind::Counter,
    Some("outcome"),
);
pub(super) const SAVES: Family = family(
    "session_saves_total",
    "Session writes by kind.",
    Kind::Counter,
    Some("kind"),
);
pub(super) const DESTROYS: Family = family(
    "session_destroys_total",
    "Sessions destroyed.",
    Kind::Counter,
    None,
);
pub(super) const ERRORS: Family = family(
    "session_errors_total",
    "Requests whose session work failed, by kind.",
    Kind::Counter,
    Some("kind"),
);
pub(super) const DUPLICATE_COOKIES: Family = family(
    "session_duplicate_cookies_total",
    "Requests that carried the session cookie more than once (given no session).",
    Kind::Counter,
    None,
);
pub(super) const HOOK_EVENTS_DROPPED: Family = family(
    "session_hook_events_dropped_total",
    "Lifecycle events not delivered to the hook: its queue was full.",
    Kind::Counter,
    None,
);
/// Recorded in microseconds, exposed in seconds.
pub(super) const STORE_SECONDS: Family = family(
    "session_store_seconds",
    "Store round-trip time by operation, failed calls included.",
    Kind::Histogram,
    Some("op"),
);
pub(super) const SIZE_BYTES: Family = family(
    "session_size_bytes",
    "Bytes of user fields a session holds after each save.",
    Kind::Histogram,
    None,
);

pub(super) const NEAR_CACHE_ENTRIES: Family = family(
    "session_near_cache_entries",
    "Sessions the near-cache holds.",
    Kind::Gauge,
    None,
);
pub(super) const NEAR_CACHE_BYTES: Family = family(
    "session_near_cache_bytes",
    "Bytes the near-cache counts against its bound (each entry at least 1 KiB).",
    Kind::Gauge,
    None,
);
pub(super) const NEAR_CACHE_PENDING_FILLS: Family = family(
    "session_near_cache_pending_fills",
    "Reads in flight whose reply may become a near-cache entry.",
    Kind::Gauge,
    None,
);
pub(super) const NEAR_CACHE_SERVING: Family = family(
    "session_near_cache_serving",
    "1 while the near-cache serves hits; 0 while it refuses them (tracking not proven, no room in Redis's tracking table, a reconnect or failover).",
    Kind::Gauge,
    None,
);

/// Every family, in the order of the Prometheus text.
pub(super) const FAMILIES: [&Family; 14] = [
    &LOADS,
    &NEAR_CACHE_HITS,
    &LOAD_OUTCOMES,
    &SAVES,
    &DESTROYS,
    &ERRORS,
    &DUPLICATE_COOKIES,
    &HOOK_EVENTS_DROPPED,
    &STORE_SECONDS,
    &SIZE_BYTES,
    &NEAR_CACHE_ENTRIES,
    &NEAR_CACHE_BYTES,
    &NEAR_CACHE_PENDING_FILLS,
    &NEAR_CACHE_SERVING,
];

/// One counter series; each has its own atomic in [`Metrics`](super::Metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Counter {
    Loads,
    CacheHits,
    Misses,
    Touches,
    TouchesSkipped,
    Creates,
    Updates,
    Cycles,
    Destroys,
    StoreErrors,
    TooLarge,
    Ended,
    Invalid,
    DuplicateCookies,
    HookEventsDropped,
}

impl Counter {
    /// In the order of the Prometheus text, which lists a family's series in this order.
    pub(super) const ALL: [Self; 15] = [
        Self::Loads,
        Self::CacheHits,
        Self::Misses,
        Self::Touches,
        Self::TouchesSkipped,
        Self::Creates,
        Self::Updates,
        Self::Cycles,
        Self::Destroys,
        Self::StoreErrors,
        Self::TooLarge,
        Self::Ended,
        Self::Invalid,
        Self::DuplicateCookies,
        Self::HookEventsDropped,
    ];

    /// The family the series belongs to, and the value of that family's label.
    pub(super) fn series(self) -> (&'static Family, Option<&'static str>) {
        match self {
            Self::Loads => (&LOADS, None),
            Self::CacheHits => (&NEAR_CACHE_HITS, None),
            Self::Misses => (&LOAD_OUTCOMES, Some("miss")),
            Self::Touches => (&LOAD_OUTCOMES, Some("touched")),
            Self::TouchesSkipped => (&LOAD_OUTCOMES, Some("touch_skipped")),
            Self::Creates => (&SAVES, Some("create")),
            Self::Updates => (&SAVES, Some("update")),
            Self::Cycles => (&SAVES, Some("cycle")),
            Self::Destroys => (&DESTROYS, None),
            Self::StoreErrors => (&ERRORS, Some("store")),
            Self::TooLarge => (&ERRORS, Some("too_large")),
            Self::Ended => (&ERRORS, Some("ended")),
            Self::Invalid => (&ERRORS, Some("invalid")),
            Self::DuplicateCookies => (&DUPLICATE_COOKIES, None),
            Self::HookEventsDropped => (&HOOK_EVENTS_DROPPED, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_index_their_atomics_in_order_and_carry_a_label_exactly_when_their_family_has_one() {
        for (i, counter) in Counter::ALL.into_iter().enumerate() {
            assert_eq!(counter as usize, i, "{counter:?}");
            let (family, value) = counter.series();
            assert_eq!(family.kind, Kind::Counter, "{counter:?}");
            assert_eq!(family.label.is_some(), value.is_some(), "{counter:?}");
        }
        let mut names: Vec<_> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
    }
}

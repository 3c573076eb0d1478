//! The one rule for a session's time to live, shared by both stores and mirrored by `next_ttl` in
//! `redis/lua/lib.lua`: a write or a touch rolls the TTL to the idle timeout (never past the
//! absolute deadline) once what remains has run below the touch threshold, lies beyond the idle
//! timeout (the timeout was shortened since, or a clock is skewed) or is unknown; otherwise the TTL
//! is left as it is, so a busy session is not re-expired and re-indexed on every request.

use crate::config::Limits;

/// This process's clock in unix milliseconds. The Redis scripts read Redis's own clock instead,
/// so that every instance agrees; this one serves the memory store and the near-cache's view of
/// expiries that Redis reported.
pub(crate) fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Whether a session with `remaining_ms` to live can be left as it is.
pub(crate) fn is_fresh(limits: &Limits, remaining_ms: i64) -> bool {
    (limits.touch_below_ms()..=limits.idle_ms()).contains(&remaining_ms)
}

/// The TTL a write leaves at `now` (unix ms) on a session whose absolute deadline and current
/// expiry are as given, and whether it rolled.
pub(crate) fn next_ttl(
    limits: &Limits,
    now: i64,
    deadline: Option<i64>,
    expires: Option<i64>,
) -> (i64, bool) {
    match expires.map(|at| at - now) {
        Some(remaining) if is_fresh(limits, remaining) => (remaining, false),
        _ => (rolled(limits, now, deadline), true),
    }
}

/// The idle timeout from `now`, cut short by the deadline, and at least a millisecond (Redis takes
/// no zero TTL).
fn rolled(limits: &Limits, now: i64, deadline: Option<i64>) -> i64 {
    let idle = limits.idle_ms();
    deadline.map_or(idle, |deadline| idle.min(deadline - now).max(1))
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    fn limits() -> Limits {
        Limits {
            idle_timeout: Duration::seconds(100),
            ..Limits::default()
        }
    }

    #[test]
    fn a_ttl_above_the_threshold_is_left_alone() {
        assert_eq!(next_ttl(&limits(), 0, None, Some(95_000)), (95_000, false));
        assert_eq!(next_ttl(&limits(), 0, None, Some(90_000)), (90_000, false));
    }

    #[test]
    fn a_low_unknown_or_too_long_ttl_rolls_to_the_idle_timeout() {
        for expires in [Some(89_999), None, Some(100_001)] {
            assert_eq!(next_ttl(&limits(), 0, None, expires), (100_000, true));
        }
    }

    #[test]
    fn a_roll_never_passes_the_deadline_and_never_reaches_zero() {
        assert_eq!(next_ttl(&limits(), 0, Some(30_000), None), (30_000, true));
        assert_eq!(next_ttl(&limits(), 0, Some(0), None), (1, true));
    }
}

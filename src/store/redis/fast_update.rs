//! The write nearly every request makes: a change of user fields to a session this request read,
//! with no TTL roll due, no login, no clear and no metadata. It takes `fast_update.lua`, a script
//! of two or three calls (`HINCRBY $version`, `HSET`/`HDEL` of the fields, `HINCRBY $size` when the
//! size changes) built without `lib.lua`, rather than `update.lua`, which reads the session's
//! metadata and the clock to decide what the caller here has already decided from what it read:
//!
//! - **No resurrection.** It writes only into a hash that has `$created`, which only `create.lua`
//!   writes and a logout deletes with the rest; the version it bumps tells it when to check.
//! - **Every key with a TTL, the absolute deadline, the owner's index**: nothing of them moves. The
//!   path is taken only while the TTL the load read is fresh, so no roll is due, and the write
//!   creates no key.
//! - **The size limit**, from the size the load vouches for plus this write's delta, kept exact by
//!   `HINCRBY` when writers change different fields. Writers racing on one session each check
//!   against what they read, so together they can pass the limit by what they add: at most
//!   [`MOST_GROWTH_SHARE`] of it each, since a write that grows the session more takes
//!   `update.lua`, whose check is atomic. The next write sees the true size.
//! - **Delta writes and the near-cache**: only the changed fields are sent, the version returned
//!   tells this process whether its cached copy plus its change is the whole session, and a read
//!   after the write keeps the connection tracking the key.
//!
//! BENCHMARKS.md ("The common write") has what this and the alternatives cost Redis and the server.

use std::future::Future;

use fred::types::Value;

use super::ops::{fence_arg, field_args};
use super::scripts::{self, fast_update_reply};
use super::RedisStore;
use crate::config::Limits;
use crate::error::Error;
use crate::store::layout::is_metadata;
use crate::store::ttl::is_fresh;
use crate::store::{Changes, Loaded, Saved};

/// The most fields one write may change and take this path; a larger write takes `update.lua`.
const MOST_FIELDS: usize = 64;

/// The most one write may grow a session on this path, as a share (1/n) of the size limit.
pub(super) const MOST_GROWTH_SHARE: usize = 64;

/// A write planned from the session as this request read it.
#[derive(Debug)]
pub(super) struct FastUpdate<'a> {
    changes: &'a Changes,
    /// The change in bytes of user fields.
    delta: i64,
    /// Bytes of user fields, as read.
    size: usize,
    /// When the session's TTL runs out, as read (unix ms, Redis's clock).
    expires_at: i64,
    ttl_ms: i64,
}

impl<'a> FastUpdate<'a> {
    /// The plan for `changes` on `base` at `now` (unix ms), or `None` when the write needs the
    /// script: a roll due, a login, a clear, metadata, many fields, or a growth the script must
    /// check.
    pub(super) fn plan(
        changes: &'a Changes,
        base: &Loaded,
        limits: &Limits,
        now: i64,
    ) -> Option<Self> {
        let ttl_ms = base.expires_at - now;
        let simple =
            !changes.clear && changes.user.is_none() && changes.fields.len() <= MOST_FIELDS;
        if !simple || !is_fresh(limits, ttl_ms) {
            return None;
        }
        let size_read = base.size?;
        let size = i64::try_from(size_read).ok()?;
        let mut delta = 0_i64;
        for (field, value) in &changes.fields {
            if is_metadata(field) {
                return None;
            }
            let held = base
                .fields
                .get(field)
                .map_or(0, |old| field.len() + old.len());
            let holds = value.as_ref().map_or(0, |new| field.len() + new.len());
            delta += holds as i64 - held as i64;
        }
        let max = i64::try_from(limits.max_bytes).unwrap_or(i64::MAX);
        let growth_checked =
            delta <= 0 || (size + delta <= max && delta <= max / MOST_GROWTH_SHARE as i64);
        growth_checked.then_some(Self {
            changes,
            delta,
            size: size_read,
            expires_at: base.expires_at,
            ttl_ms,
        })
    }
}

impl RedisStore {
    /// Sends a planned write: `fast_update.lua`, one round trip.
    pub(super) fn fast_update<'a>(
        &'a self,
        redis_key: String,
        plan: FastUpdate<'a>,
        fence: Option<u64>,
    ) -> impl Future<Output = Result<Saved, Error>> + Send + 'a {
        let (expires_at, ttl_ms, size_read) = (plan.expires_at, plan.ttl_ms, plan.size);
        let (sets, mut args) = field_args(plan.changes);
        let named = scripts::FastUpdateArgs {
            delta: Value::from(plan.delta),
            track: self.track(),
            fence: fence_arg(fence),
            sets,
        };
        let mut values = named.into_values();
        values.append(&mut args);
        let sent = self.run(scripts::FastUpdateArgs::script(), vec![redis_key], values);
        async move {
            let reply = sent.await?;
            if scripts::is_fenced(&reply) {
                return Ok(Saved::Fenced);
            }
            Ok(match fast_update_reply(reply)? {
                // An unchanged size is the one read: had anyone else written since, the version
                // would say so and nothing would be built on it.
                Some((version, size)) => Saved::Written {
                    ttl_ms,
                    expires_at,
                    version,
                    size: size.unwrap_or(size_read),
                },
                None => Saved::Gone,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(fields: &[(&str, &str)], size: usize) -> Loaded {
        Loaded {
            fields: std::sync::Arc::new(
                fields
                    .iter()
                    .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            size: Some(size),
            expires_at: 1_000 + Limits::default().idle_ms(),
            ..Loaded::default()
        }
    }

    fn changes(fields: &[(&str, Option<&str>)]) -> Changes {
        Changes {
            fields: fields
                .iter()
                .map(|(f, v)| ((*f).to_owned(), v.map(str::to_owned)))
                .collect(),
            ..Changes::default()
        }
    }

    #[test]
    fn a_change_of_user_fields_is_planned_with_its_size_delta() {
        let base = base(&[("count", "9"), ("theme", "\"dark\"")], 16);
        let changes = changes(&[("count", Some("10")), ("theme", None)]);
        let plan = FastUpdate::plan(&changes, &base, &Limits::default(), 1_000).unwrap();
        // What it sends: one field set, then the field removed.
        let (sets, args) = field_args(plan.changes);
        assert_eq!(sets, Value::from(1));
        assert_eq!(args, ["count", "10", "theme"].map(Value::from));
        assert_eq!(plan.delta, 1 - 11);
    }

    #[test]
    fn what_needs_the_script_takes_it() {
        let limits = Limits::default();
        let base = base(&[("count", "9")], 6);
        let plain = changes(&[("count", Some("10"))]);
        let no_plan = |changes: &Changes, base: &Loaded, now: i64| {
            FastUpdate::plan(changes, base, &limits, now).is_none()
        };
        assert!(!no_plan(&plain, &base, 1_000));
        // A roll due, or a TTL this clock cannot vouch for.
        assert!(no_plan(&plain, &base, 1_000 + limits.idle_ms() / 2));
        assert!(no_plan(&plain, &base, 0));
        // No size the load vouches for.
        assert!(no_plan(
            &plain,
            &Loaded {
                size: None,
                ..base.clone()
            },
            1_000
        ));
        for changes in [
            Changes {
                clear: true,
                ..plain.clone()
            },
            Changes {
                user: Some("alice".into()),
                ..plain.clone()
            },
            changes(&[("$epoch", Some("1"))]),
        ] {
            assert!(no_plan(&changes, &base, 1_000), "{changes:?}");
        }
        // Growth past the limit, or by more than the path's share of it.
        let big = "x".repeat(limits.max_bytes / MOST_GROWTH_SHARE);
        assert!(no_plan(&changes(&[("big", Some(&big))]), &base, 1_000));
        let full = Loaded {
            size: Some(limits.max_bytes),
            ..base.clone()
        };
        assert!(no_plan(&changes(&[("count", Some("100"))]), &full, 1_000));
        // Shrinking is always fine.
        assert!(!no_plan(&changes(&[("count", None)]), &full, 1_000));
    }
}

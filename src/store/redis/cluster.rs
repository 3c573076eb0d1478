//! What a cluster needs beyond one slot: a user's index lives on another slot than the user's
//! sessions, so it is kept in step by single-key calls after each session script; a cycle moves a
//! session between two slots in steps that no logout can undo; and a logout-everywhere bumps the
//! user's revocation epoch before deleting the sessions one by one.

use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::{ClientLike, SortedSetsInterface};
use fred::types::Value;

use super::conn::write_options;
use super::near_cache::Ended;
use super::ops::cap_arg;
use super::scripts::{self, Taken, Wrote};
use super::RedisStore;
use crate::config::Limits;
use crate::error::Error;
use crate::id::KeyId;
use crate::store::layout::{CREATED_FIELD, EPOCH_FIELD, HANDLE_FIELD, USER_FIELD, VERSION_FIELD};
use crate::store::{Changes, Saved};

/// Attempts at moving a session on a cluster while other requests keep writing it.
const CYCLE_ATTEMPTS: usize = 3;

/// How much longer than the idle timeout a session's index entry is extended before its TTL rolls:
/// the roll comes a round trip later, on the same clock.
const PRE_ROLL_MARGIN_MS: i64 = 1_000;

/// Who owned a session before and after a write, for updating indexes outside the script.
#[derive(Debug)]
pub(super) struct Owners {
    previous: Option<String>,
    current: Option<String>,
    /// The write rolled the TTL, so the owner's index entry must follow it.
    rolled: bool,
    /// The session's TTL after the write, ms.
    ttl_ms: i64,
}

impl Owners {
    pub(super) fn of(wrote: &Wrote) -> Self {
        Self {
            previous: wrote.previous.clone(),
            current: wrote.owner.clone(),
            rolled: wrote.rolled,
            ttl_ms: wrote.ttl_ms,
        }
    }
}

/// How a key id enters a user's index on a cluster (`index.lua`'s `admit`).
#[derive(Debug, Clone, Copy)]
enum Admit<'a> {
    /// A session already indexed, at its new expiry: never refused.
    Roll,
    /// A session just bound to the user: never refused (it is new to the user); the index returns
    /// the user's epoch for it to record.
    Login,
    /// A bound session under a new id: refused if the user has logged out everywhere since it
    /// recorded its epoch, or has ended its device meanwhile.
    Moved(Carried<'a>),
}

/// What a session moved to a new id carries for its index to check ('' for none).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Carried<'a> {
    /// The user's revocation epoch the session was logged in under (`$epoch`).
    epoch: &'a str,
    /// Its device handle (`$handle`).
    handle: &'a str,
}

impl RedisStore {
    /// Cycles an id on a cluster, where the old and new keys live on different slots, so no script
    /// can do it at once. The order leaves no window in which a logout could be undone: read the
    /// session; write it, with this request's changes, under the new id (refused there for a
    /// collision or the size limit, before anything is deleted); then delete the old key, only if
    /// it still holds what was read. If a logout took it meanwhile, the new key is deleted too and
    /// the session is gone; if a write changed it, the move starts over with that write. Last, the
    /// new id enters the owner's index, which refuses it if a logout-everywhere has run since the
    /// session was logged in (its `$epoch`): then too the new key is deleted and the session gone.
    ///
    /// A logout-everywhere (L: `revoke.lua` bumps the epoch and lists the index, then each listed
    /// session is deleted) racing a cycle of a bound session S1 to S2 (C1 read S1, C2 write S2,
    /// C3 `take_if` S1, C4 `index.lua` adds S2), by where L's first step lands:
    ///
    /// | L's revoke          | S1                                  | S2                          |
    /// |---------------------|-------------------------------------|-----------------------------|
    /// | before C1           | deleted by L (C1 or C3 finds it gone) or by C3 | refused at C4, deleted |
    /// | between C1 and C4   | listed: deleted by L or by C3       | refused at C4 (epoch bumped), deleted |
    /// | after C4            | deleted by C3                       | listed by L, deleted by L   |
    ///
    /// A login to another user (or from no user) is not checked: its session is new, admitted at
    /// C4 with the epoch it then records (`stamp.lua`); a logout-everywhere before C4 does not
    /// list it, one after C4 does. A login again as the session's own user is checked as a cycle.
    pub(super) async fn cycle_across_slots(
        &self,
        key: &KeyId,
        from: &KeyId,
        changes: &Changes,
        limits: &Limits,
        ended: &mut Ended,
    ) -> Result<Saved, Error> {
        let from_key = self.session_key(from);
        for _ in 0..CYCLE_ATTEMPTS {
            let old = self.hgetall(&from_key).await?;
            // No hash, or what a write racing the session's end left of it.
            if !old.contains_key(CREATED_FIELD) {
                return Ok(Saved::Gone);
            }
            let version = old.get(VERSION_FIELD).cloned().unwrap_or_default();
            let previous = old.get(USER_FIELD).cloned();
            let epoch = old.get(EPOCH_FIELD).cloned().unwrap_or_default();
            let handle = old.get(HANDLE_FIELD).cloned().unwrap_or_default();
            let mut moved = changes.moved_onto(old);
            if changes.user.is_some() && changes.user != previous {
                // Another user's epoch; this user's is recorded once the login is indexed.
                moved.fields.remove(EPOCH_FIELD);
            }
            let (saved, wrote) = self.create_script(key, None, &moved, limits, ended).await?;
            let Some(wrote) = wrote else {
                return Ok(saved);
            };
            let args = scripts::TakeIfArgs {
                version: Value::from(version),
            };
            ended.push(&from_key);
            let script = scripts::TakeIfArgs::script();
            let taken = self
                .run(script, vec![from_key.clone()], args.into_values())
                .await?;
            match scripts::take_if_reply(&taken)? {
                Taken::Deleted => {
                    // The owner is the login's user, else the one the session moved with: the
                    // script, writing it as a new session, knows only a login's.
                    let owners = Owners {
                        current: wrote.owner.or_else(|| previous.clone()),
                        previous,
                        rolled: true,
                        ttl_ms: wrote.ttl_ms,
                    };
                    let cap = changes.user.as_ref().and(limits.max_sessions_per_user);
                    let carried = Carried {
                        epoch: &epoch,
                        handle: &handle,
                    };
                    let admitted = self.reindex(owners, from, key, cap, carried, ended).await?;
                    return Ok(if admitted { saved } else { Saved::Gone });
                }
                outcome @ (Taken::Gone | Taken::Changed) => {
                    self.delete_sessions(&[key.as_str().to_owned()], ended)
                        .await?;
                    if outcome == Taken::Gone {
                        return Ok(Saved::Gone);
                    }
                }
            }
        }
        Err(Error::Store(FredError::new(
            ErrorKind::Unknown,
            "session kept changing while its id was being cycled",
        )))
    }

    /// After a write on a cluster: the session's entry leaves its previous owner's index under
    /// `from` and joins its current owner's under `to`, one single-key call per index touched. A
    /// session moved to a new id under the same owner enters only if it was logged in under the
    /// owner's current epoch and its device was not ended meanwhile (see [`Carried`]); otherwise
    /// `to` is deleted and this returns `false`. A session that has just been bound to its owner (a login) records the
    /// owner's epoch in a call of its own, only when the owner has one (has ever logged out
    /// everywhere).
    pub(super) async fn reindex(
        &self,
        owners: Owners,
        from: &KeyId,
        to: &KeyId,
        cap: Option<u32>,
        carried: Carried<'_>,
        ended: &mut Ended,
    ) -> Result<bool, Error> {
        let (moved, ttl_ms) = (from != to, owners.ttl_ms);
        match (owners.previous, owners.current) {
            // Same owner, same id, same expiry, no login: the index entry is already right.
            (Some(previous), Some(current))
                if previous == current && !moved && !owners.rolled && cap.is_none() =>
            {
                Ok(true)
            }
            (Some(previous), Some(current)) if previous == current => {
                let (removed, admit) = match moved {
                    true => (Some(from), Admit::Moved(carried)),
                    false => (None, Admit::Roll),
                };
                let admitted = self
                    .index(&current, removed, Some((to, ttl_ms, admit)), cap, ended)
                    .await?;
                if admitted.is_none() {
                    self.delete_sessions(&[to.as_str().to_owned()], ended)
                        .await?;
                }
                Ok(admitted.is_some())
            }
            (previous, current) => {
                if let Some(previous) = previous {
                    self.update_index(&previous, Some(from), None).await?;
                }
                if let Some(current) = current {
                    let add = Some((to, ttl_ms, Admit::Login));
                    let admitted = self.index(&current, None, add, cap, ended).await?;
                    if let Some(epoch) = admitted.filter(|&epoch| epoch != 0) {
                        let args = scripts::StampArgs {
                            epoch: Value::from(epoch),
                        };
                        let to_key = self.session_key(to);
                        ended.push(&to_key);
                        let script = scripts::StampArgs::script();
                        self.run(script, vec![to_key], args.into_values()).await?;
                    }
                }
                Ok(true)
            }
        }
    }

    /// Extends `key`'s entry in `user`'s index past any TTL a roll can give it, before the roll:
    /// should this fail, nothing rolls (the request fails); should the roll fail after it, the
    /// entry merely outlives the session. Either way the index never holds a session for less long
    /// than the session lives, so a logout-everywhere finds it. (Updated after the roll instead, a
    /// failure left the entry at the old expiry until the next roll, and the session out of the
    /// index once that passed.)
    pub(super) async fn extend_index_before_roll(
        &self,
        user: &str,
        key: &KeyId,
        limits: &Limits,
    ) -> Result<(), Error> {
        let ttl = limits.idle_ms() + PRE_ROLL_MARGIN_MS;
        self.update_index(user, None, Some((key, ttl))).await
    }

    /// [`index`](Self::index) for a removal or the new expiry of an indexed session, which are
    /// never refused and evict nothing.
    pub(super) async fn update_index(
        &self,
        user: &str,
        remove: Option<&KeyId>,
        add: Option<(&KeyId, i64)>,
    ) -> Result<(), Error> {
        let add = add.map(|(key, ttl)| (key, ttl, Admit::Roll));
        let mut nothing_evicted = Ended::default();
        let indexed = self.index(user, remove, add, None, &mut nothing_evicted);
        indexed.await.map(drop)
    }

    /// Updates one user's index with its own single-key script (cluster only), then deletes the
    /// sessions that `cap` evicted from it, each with its own single-key command. Returns the
    /// user's revocation epoch (0 for none), or `None` when `add` was refused (see [`Admit`]).
    async fn index(
        &self,
        user: &str,
        remove: Option<&KeyId>,
        add: Option<(&KeyId, i64, Admit<'_>)>,
        cap: Option<u32>,
        ended: &mut Ended,
    ) -> Result<Option<i64>, Error> {
        let (admit, carried) = match add {
            None | Some((_, _, Admit::Roll)) => ("roll", Carried::default()),
            Some((_, _, Admit::Login)) => ("login", Carried::default()),
            Some((_, _, Admit::Moved(carried))) => ("moved", carried),
        };
        let args = scripts::IndexArgs {
            remove: Value::from(remove.map_or("", KeyId::as_str)),
            add: Value::from(add.map_or("", |(key, _, _)| key.as_str())),
            admit: Value::from_static_str(admit),
            epoch: Value::from(carried.epoch),
            handle: Value::from(carried.handle),
            ttl: Value::from(add.map_or(0, |(_, ttl, _)| ttl)),
            // Slack for the index's own TTL, so not every add must rewrite it.
            slack: Value::from(add.map_or(0, |(_, ttl, _)| ttl / 10)),
            cap: cap_arg(cap),
        };
        let keys = vec![self.index_key(user)];
        let script = scripts::IndexArgs::script();
        let reply = self.run(script, keys, args.into_values()).await?;
        let Some((epoch, evicted)) = scripts::index_reply(reply)? else {
            return Ok(None);
        };
        self.delete_sessions(&evicted, ended).await?;
        Ok(Some(epoch))
    }

    /// Logout-everywhere on a cluster, where the sessions live on other slots: one script on the
    /// index's slot bumps the user's revocation epoch and lists the index (so that a session being
    /// cycled meanwhile, not listed, is refused when it comes to be indexed: see
    /// [`Self::cycle_across_slots`]), then each session is deleted with its own single-key
    /// command, in bounded batches, and only those entries removed from the index. The epoch is
    /// kept for at least the idle timeout. With `keep_current` ("log out other devices") the
    /// asking session stays: left out of the deletes, it records the new epoch, so that its own
    /// later cycles are still admitted.
    pub(super) async fn revoke(
        &self,
        user: &str,
        current: &KeyId,
        keep_current: bool,
        limits: &Limits,
        ended: &mut Ended,
    ) -> Result<(), Error> {
        let index = self.index_key(user);
        let args = scripts::RevokeArgs {
            ttl: Value::from(limits.idle_ms()),
        };
        let script = scripts::RevokeArgs::script();
        let reply = self.run(script, vec![index.clone()], args.into_values());
        let (epoch, mut ids) = scripts::revoke_reply(reply.await?)?;
        if keep_current {
            ids.retain(|id| id != current.as_str());
        }
        self.delete_sessions(&ids, ended).await?;
        if !ids.is_empty() {
            let client = self.client().with_options(&write_options());
            let _: () = self.bounded(client.zrem(index.as_str(), ids)).await?;
        }
        if !keep_current {
            return self
                .delete_sessions(&[current.as_str().to_owned()], ended)
                .await;
        }
        let current_key = self.session_key(current);
        ended.push(&current_key);
        let args = scripts::StampArgs {
            epoch: Value::from(epoch),
        };
        let script = scripts::StampArgs::script();
        self.run(script, vec![current_key], args.into_values())
            .await
            .map(drop)
    }
}

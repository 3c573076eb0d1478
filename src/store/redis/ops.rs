//! The store's operations on one session: each is one round trip on the session's own slot (a read
//! is a plain `HGETALL`, every write one script), but for what a cluster must do on other slots,
//! which `cluster.rs` adds. Every key an operation writes or deletes is reported to the near-cache
//! seam as [`Ended`], which forgets it once the operation is over.

use fred::types::Value;

use super::cluster::{Carried, Owners};
use super::fast_update::FastUpdate;
use super::near_cache::Ended;
use super::scripts::{self, IncrReply, WriteReply, Wrote};
use super::RedisStore;
use crate::config::Limits;
use crate::error::Error;
use crate::id::KeyId;
use crate::store::layout::session_key;
use crate::store::ttl::{is_fresh, now_ms};
use crate::store::{Changes, Incremented, Loaded, SaveMode, Saved};

impl RedisStore {
    /// A session from the near-cache when it holds it fresh (no round trip), else from Redis.
    pub(crate) async fn load(&self, key: &KeyId, limits: &Limits) -> Result<Option<Loaded>, Error> {
        let redis_key = self.session_key(key);
        let read = self.read(&redis_key, key, limits);
        self.near.load(self, &redis_key, limits, read).await
    }

    /// A plain `HGETALL`: one round trip and one command. The TTL is rolled by a second call only
    /// when the `$expires` the session carries says it has run below the touch threshold.
    async fn read(
        &self,
        redis_key: &str,
        key: &KeyId,
        limits: &Limits,
    ) -> Result<Option<Loaded>, Error> {
        let stored = self.read_session(redis_key).await?;
        // No hash, or one that is no session (docs/layout.md).
        if !stored.live {
            return Ok(None);
        }
        // Past the idle timeout means this app's clock is behind Redis's: touch rather than trust it.
        let now = now_ms();
        let fresh = stored.expires_at.filter(|&at| is_fresh(limits, at - now));
        let (expires_at, ttl_ms, touched) = match fresh {
            Some(at) => (at, at - now, false),
            None => match self.touch(key, stored.user.as_deref(), limits).await? {
                Some((ttl_ms, expires_at)) => (expires_at, ttl_ms, true),
                None => return Ok(None),
            },
        };
        Ok(Some(stored.into_loaded(ttl_ms, expires_at, touched)))
    }

    /// Rolls the idle TTL (never past the absolute deadline): the new TTL and when it runs out, or
    /// `None` if the session is gone. `user` is the owner the load just read, whose index a cluster
    /// updates here rather than in the script.
    async fn touch(
        &self,
        key: &KeyId,
        user: Option<&str>,
        limits: &Limits,
    ) -> Result<Option<(i64, i64)>, Error> {
        let inline_index = self.inline_index();
        if let (false, Some(user)) = (inline_index, user) {
            self.extend_index_before_roll(user, key, limits).await?;
        }
        let args = scripts::TouchArgs {
            idle: Value::from(limits.idle_ms()),
            prefix: self.prefix(),
            key_id: Value::from(key.as_str()),
            inline_index: flag(inline_index),
            track: self.track(),
        };
        let script = scripts::TouchArgs::script();
        let reply = self
            .run(script, vec![self.session_key(key)], args.into_values())
            .await?;
        scripts::touch_reply(reply)
    }

    pub(crate) async fn save(
        &self,
        key: &KeyId,
        mode: SaveMode<'_>,
        changes: &Changes,
        limits: &Limits,
    ) -> Result<Saved, Error> {
        let mut ended = self.near.ended();
        let saved = match mode {
            SaveMode::Update { base, fence } => {
                let redis_key = self.session_key(key);
                let update = self.update(key, changes, limits, base, fence);
                self.near.update(&redis_key, changes, update).await
            }
            SaveMode::New => self.create(key, None, changes, limits, &mut ended).await,
            SaveMode::Cycle { from } if self.inline_index() => {
                self.create(key, Some(from), changes, limits, &mut ended)
                    .await
            }
            SaveMode::Cycle { from } => {
                self.cycle_across_slots(key, from, changes, limits, &mut ended)
                    .await
            }
        };
        self.near.end(ended);
        saved
    }

    /// `fast_update.lua` when the session as read allows it (`fast_update.rs`), else
    /// `update.lua`, then on a cluster the owner's index when the TTL rolled. The session's own
    /// key is the near-cache seam's to refresh or forget.
    async fn update(
        &self,
        key: &KeyId,
        changes: &Changes,
        limits: &Limits,
        base: Option<&Loaded>,
        fence: Option<u64>,
    ) -> Result<Saved, Error> {
        debug_assert!(changes.user.is_none(), "a login always moves the session");
        let plan = base.and_then(|base| FastUpdate::plan(changes, base, limits, now_ms()));
        if let Some(plan) = plan {
            return self.fast_update(self.session_key(key), plan, fence).await;
        }
        let inline_index = self.inline_index();
        let (sets, mut args) = field_args(changes);
        let named = scripts::UpdateArgs {
            idle: Value::from(limits.idle_ms()),
            max_bytes: max_bytes(limits),
            prefix: self.prefix(),
            key_id: Value::from(key.as_str()),
            clear: flag(changes.clear),
            inline_index: flag(inline_index),
            touch_below: self.write_touch_below(limits),
            track: self.track(),
            fence: fence_arg(fence),
            sets,
        };
        let mut values = named.into_values();
        values.append(&mut args);
        let script = scripts::UpdateArgs::script();
        let reply = self
            .run(script, vec![self.session_key(key)], values)
            .await?;
        let (mut saved, wrote) = saved(scripts::update_reply(reply)?);
        if let (
            Some(wrote),
            Saved::Written {
                ttl_ms, expires_at, ..
            },
        ) = (wrote, &mut saved)
        {
            if let Some(rolled) = self
                .roll_after_write(key, &wrote.owner, *ttl_ms, limits)
                .await?
            {
                (*ttl_ms, *expires_at) = rolled;
            }
        }
        Ok(saved)
    }

    /// `create.lua`: a new session under `key`, or the one under `from` moved there, on one slot.
    async fn create(
        &self,
        key: &KeyId,
        from: Option<&KeyId>,
        changes: &Changes,
        limits: &Limits,
        ended: &mut Ended,
    ) -> Result<Saved, Error> {
        let (saved, wrote) = self
            .create_script(key, from, changes, limits, ended)
            .await?;
        if let (false, Some(wrote)) = (self.inline_index(), wrote) {
            let cap = changes.user.as_ref().and(limits.max_sessions_per_user);
            // Nothing moved, so nothing can be refused.
            self.reindex(Owners::of(&wrote), key, key, cap, Carried::default(), ended)
                .await?;
        }
        Ok(saved)
    }

    /// Runs `create.lua`; the reply's owners, for a cluster's index, when it wrote.
    pub(super) async fn create_script(
        &self,
        key: &KeyId,
        from: Option<&KeyId>,
        changes: &Changes,
        limits: &Limits,
        ended: &mut Ended,
    ) -> Result<(Saved, Option<Wrote>), Error> {
        let mut keys = vec![self.session_key(key)];
        keys.extend(from.map(|from| self.session_key(from)));
        if let Some(from) = keys.get(1) {
            ended.push(from);
        }
        let (sets, mut args) = field_args(changes);
        let named = scripts::CreateArgs {
            mode: Value::from_static_str(if from.is_some() { "cycle" } else { "new" }),
            idle: Value::from(limits.idle_ms()),
            absolute: limits
                .absolute_ms()
                .map_or_else(|| Value::from_static_str(""), Value::from),
            max_bytes: max_bytes(limits),
            prefix: self.prefix(),
            key_id: Value::from(key.as_str()),
            source_id: Value::from(from.map_or("", KeyId::as_str)),
            clear: flag(changes.clear),
            user: Value::from(changes.user.as_deref().unwrap_or("")),
            inline_index: flag(self.inline_index()),
            max_per_user: cap_arg(limits.max_sessions_per_user),
            track: self.track(),
            sets,
        };
        let mut values = named.into_values();
        values.append(&mut args);
        let reply = self
            .run(scripts::CreateArgs::script(), keys, values)
            .await?;
        let (saved, wrote) = saved(scripts::create_reply(reply)?);
        for id in wrote.iter().flat_map(|wrote| &wrote.evicted) {
            ended.push(&self.id_key(id));
        }
        Ok((saved, wrote))
    }

    /// Adds `by` to an integer field inside the script that checks the session exists: one round
    /// trip, no load, and concurrent increments all count.
    pub(crate) async fn increment(
        &self,
        key: &KeyId,
        field: &str,
        by: i64,
        limits: &Limits,
    ) -> Result<Incremented, Error> {
        let mut ended = self.near.ended();
        let incremented = self.incr(key, field, by, limits, &mut ended).await;
        self.near.end(ended);
        incremented
    }

    async fn incr(
        &self,
        key: &KeyId,
        field: &str,
        by: i64,
        limits: &Limits,
        ended: &mut Ended,
    ) -> Result<Incremented, Error> {
        let inline_index = self.inline_index();
        let args = scripts::IncrArgs {
            field: Value::from(field),
            by: Value::from(by),
            idle: Value::from(limits.idle_ms()),
            max_bytes: max_bytes(limits),
            prefix: self.prefix(),
            key_id: Value::from(key.as_str()),
            inline_index: flag(inline_index),
            touch_below: self.write_touch_below(limits),
            track: self.track(),
        };
        let redis_key = self.session_key(key);
        ended.push(&redis_key);
        let script = scripts::IncrArgs::script();
        let reply = self
            .run(script, vec![redis_key], args.into_values())
            .await?;
        Ok(match scripts::incr_reply(reply)? {
            IncrReply::To {
                value,
                ttl_ms,
                owner,
            } => {
                self.roll_after_write(key, &owner, ttl_ms, limits).await?;
                Incremented::To(value)
            }
            IncrReply::Gone => Incremented::Gone,
            IncrReply::NotInteger(value) => Incremented::NotInteger(value),
            IncrReply::TooLarge => Incremented::TooLarge,
        })
    }

    /// Deletes a session and its index entry.
    /// `None` when there was no session, else its owner, if any.
    pub(crate) async fn destroy(&self, key: &KeyId) -> Result<Option<Option<String>>, Error> {
        let mut ended = self.near.ended();
        let destroyed = self.take(key, &mut ended).await;
        self.near.end(ended);
        destroyed
    }

    async fn take(&self, key: &KeyId, ended: &mut Ended) -> Result<Option<Option<String>>, Error> {
        let inline_index = self.inline_index();
        let args = scripts::DestroyArgs {
            prefix: self.prefix(),
            key_id: Value::from(key.as_str()),
            inline_index: flag(inline_index),
        };
        let redis_key = self.session_key(key);
        ended.push(&redis_key);
        let script = scripts::DestroyArgs::script();
        let reply = self
            .run(script, vec![redis_key], args.into_values())
            .await?;
        let destroyed = scripts::destroy_reply(reply)?;
        if let (false, Some(Some(owner))) = (inline_index, &destroyed) {
            self.update_index(owner, Some(key), None).await?;
        }
        Ok(destroyed)
    }

    /// Deletes every session of `user`, and `current` (the session asking) even if the index
    /// missed it. On one server, one script does it all at once; a cluster needs the steps of
    /// [`Self::revoke`].
    pub(crate) async fn destroy_user(
        &self,
        user: &str,
        current: &KeyId,
        limits: &Limits,
    ) -> Result<(), Error> {
        let mut ended = self.near.ended();
        let destroyed = match self.inline_index() {
            true => self.destroy_user_at_once(user, current, &mut ended).await,
            false => self.revoke(user, current, false, limits, &mut ended).await,
        };
        self.near.end(ended);
        destroyed
    }

    async fn destroy_user_at_once(
        &self,
        user: &str,
        current: &KeyId,
        ended: &mut Ended,
    ) -> Result<(), Error> {
        let keys = vec![self.index_key(user), self.session_key(current)];
        ended.push(&keys[1]);
        let args = scripts::DestroyUserArgs {
            prefix: self.prefix(),
        };
        let script = scripts::DestroyUserArgs::script();
        let reply = self.run(script, keys, args.into_values());
        // The sessions are deleted whether or not the reply that lists them arrives.
        let ids = scripts::ids_reply(reply.await?, "destroy_user")?;
        for id in &ids {
            ended.push(&self.id_key(id));
        }
        Ok(())
    }

    /// Deletes the sessions with these key ids, each with its own single-key command, in
    /// pipelines of bounded size.
    pub(super) async fn delete_sessions(
        &self,
        ids: &[String],
        ended: &mut Ended,
    ) -> Result<(), Error> {
        for batch in ids.chunks(500) {
            let keys: Vec<String> = batch.iter().map(|id| self.id_key(id)).collect();
            for key in &keys {
                ended.push(key);
            }
            self.delete_keys(keys).await?;
        }
        Ok(())
    }

    pub(super) fn session_key(&self, key: &KeyId) -> String {
        self.id_key(key.as_str())
    }

    /// [`session_key`](Self::session_key) for a key id read back from an index.
    pub(super) fn id_key(&self, id: &str) -> String {
        session_key(&self.key_prefix, id)
    }

    pub(super) fn index_key(&self, user: &str) -> String {
        crate::store::layout::index_key(&self.key_prefix, user)
    }

    /// The threshold below which a write script rolls the TTL. None on a cluster, where only
    /// `touch` rolls a TTL, after extending the owner's index entry (see
    /// [`extend_index_before_roll`](Self::extend_index_before_roll)).
    fn write_touch_below(&self, limits: &Limits) -> Value {
        Value::from(match self.inline_index() {
            true => limits.touch_below_ms(),
            false => 0,
        })
    }

    /// On a cluster, rolls the TTL a write left running low (the write scripts do not there): the
    /// new TTL and when it runs out, if it rolled.
    async fn roll_after_write(
        &self,
        key: &KeyId,
        owner: &Option<String>,
        ttl_ms: i64,
        limits: &Limits,
    ) -> Result<Option<(i64, i64)>, Error> {
        if self.inline_index() || is_fresh(limits, ttl_ms) {
            return Ok(None);
        }
        self.touch(key, owner.as_deref(), limits).await
    }

    /// Whether the scripts must read a key again after writing it, to keep it tracked.
    pub(super) fn track(&self) -> Value {
        flag(self.near.is_on())
    }

    pub(super) fn prefix(&self) -> Value {
        Value::from(&*self.key_prefix)
    }
}

/// A write script's field arguments: the count of fields set, then the field/value pairs set and
/// the fields removed.
pub(super) fn field_args(changes: &Changes) -> (Value, Vec<Value>) {
    let mut args = Vec::with_capacity(changes.fields.len() * 2);
    for (field, value) in &changes.fields {
        if let Some(value) = value {
            args.push(Value::from(field.as_str()));
            args.push(Value::from(value.as_str()));
        }
    }
    let sets = args.len() / 2;
    for (field, value) in &changes.fields {
        if value.is_none() {
            args.push(Value::from(field.as_str()));
        }
    }
    (Value::from(sets as i64), args)
}

/// What a write script's reply means to the layer, and what it wrote, if it did.
fn saved(reply: WriteReply) -> (Saved, Option<Wrote>) {
    match reply {
        WriteReply::Wrote(wrote) => {
            let saved = Saved::Written {
                ttl_ms: wrote.ttl_ms,
                expires_at: wrote.expires_at,
                version: wrote.version,
                size: wrote.size,
            };
            (saved, Some(wrote))
        }
        WriteReply::Gone => (Saved::Gone, None),
        WriteReply::Collision => (Saved::Collision, None),
        WriteReply::TooLarge => (Saved::TooLarge, None),
        WriteReply::Fenced => (Saved::Fenced, None),
    }
}

fn max_bytes(limits: &Limits) -> Value {
    Value::from(i64::try_from(limits.max_bytes).unwrap_or(i64::MAX))
}

/// A per-user cap as a script argument: '' for none.
pub(super) fn cap_arg(cap: Option<u32>) -> Value {
    cap.map_or_else(|| Value::from_static_str(""), |n| Value::from(i64::from(n)))
}

/// A save's fencing token as a script argument: '' for a request that does not hold the lock.
pub(super) fn fence_arg(fence: Option<u64>) -> Value {
    fence.map_or_else(
        || Value::from_static_str(""),
        |token| Value::from(token.to_string()),
    )
}

pub(super) fn flag(on: bool) -> Value {
    Value::from_static_str(if on { "1" } else { "0" })
}

//! Where sessions live. Both backends keep the same contract, spelled out on [`Backend`]'s methods,
//! and pass the same behaviour suite; they share the layout (`layout.rs`) and the TTL rule
//! (`ttl.rs`).

mod foreign;
pub(crate) mod format;
mod layout;
mod memory;
mod redis;
pub(crate) mod ttl;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use self::foreign::ForeignStore;
pub use self::format::Format;
use self::layout::is_metadata;
use self::layout::{FENCE_FIELD, LOCK_FIELD};
pub(crate) use self::layout::{
    FLASH_PREFIX, HANDLE_FIELD, IP_FIELD, RESERVED_PREFIX, SEEN_FIELD, USER_AGENT_FIELD,
    USER_AGENT_MAX,
};
pub use self::memory::MemoryStore;
pub(crate) use self::redis::ForeignWrite;
pub use self::redis::RedisStore;
use crate::config::Limits;
use crate::error::Error;
use crate::id::KeyId;
use crate::metrics::NearCacheGauges;

/// A session as loaded: its fields (user keys and flash values, as JSON text) and its owner.
#[derive(Debug, Default, Clone)]
pub(crate) struct Loaded {
    /// Shared: a near-cache hit hands the cached map to the request without copying it.
    pub(crate) fields: Arc<HashMap<String, String>>,
    pub(crate) user: Option<String>,
    /// Time to live after this load, in milliseconds.
    pub(crate) ttl_ms: i64,
    /// Whether this load rolled the TTL (so a persistent cookie needs a fresh `Max-Age`).
    pub(crate) touched: bool,
    /// Served by the near-cache, without a round trip.
    pub(crate) cached: bool,
    /// Its `$version`: bumped by every write, so a writer that gets back this plus one knows
    /// nobody else wrote in between (the near-cache's question).
    #[cfg_attr(not(feature = "near-cache"), allow(dead_code))]
    pub(crate) version: u64,
    /// When its TTL runs out, in unix ms on the store's clock (Redis's, for Redis).
    pub(crate) expires_at: i64,
    /// Bytes of its user fields, as the store keeps count of them (`None` where it does not).
    pub(crate) size: Option<usize>,
    /// In a foreign format, the whole value as read: what a write compares against before it
    /// replaces it.
    pub(crate) foreign: Option<Arc<Vec<u8>>>,
}

/// What one request changed: applied by the store as a delta, never as a whole-record rewrite.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Changes {
    /// Remove every user field before applying `fields`.
    pub(crate) clear: bool,
    /// Field name to its new JSON text, or `None` to remove it.
    pub(crate) fields: BTreeMap<String, Option<String>>,
    /// Bind the session to this user id.
    pub(crate) user: Option<String>,
    /// The session must exist once the request ends, even if nothing else changed: a CSRF token
    /// was derived from its id. Read by the end of the request only; a store has nothing to write
    /// for it.
    pub(crate) persist: bool,
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        !self.clear && self.fields.is_empty() && self.user.is_none() && !self.persist
    }

    /// These changes applied to a whole stored session (metadata included), as the fields of a new
    /// session: what a session moved to another key must hold. Its lock stays behind: it belongs
    /// to the old id, whose holder releases it there.
    pub(crate) fn moved_onto(&self, stored: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut fields: BTreeMap<String, Option<String>> = stored
            .into_iter()
            .filter(|(field, _)| field != LOCK_FIELD && field != FENCE_FIELD)
            .filter(|(field, _)| !self.clear || is_metadata(field))
            .map(|(field, value)| (field, Some(value)))
            .collect();
        for (field, value) in &self.fields {
            match value {
                Some(value) => fields.insert(field.clone(), Some(value.clone())),
                None => fields.remove(field),
            };
        }
        Self {
            fields,
            user: self.user.clone(),
            ..Self::default()
        }
    }
}

/// One of a user's live sessions, as the stores list them for the device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) key_id: String,
    /// Unix ms.
    pub(crate) created: i64,
    /// When a request last loaded it (unix ms), as of its last TTL roll.
    pub(crate) seen: i64,
    pub(crate) user_agent: Option<String>,
    pub(crate) ip: Option<String>,
    pub(crate) handle: String,
}

/// How a save relates to what the store already holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SaveMode<'a> {
    /// A fresh id: written only if the key is free.
    New,
    /// An existing session: written only if it still exists. `base` is the session as this
    /// request read it, if it did and nothing of its own changed it in the store since (an
    /// increment): the store may write from it without reading the session again. `fence` is the
    /// fencing token of the session's lock when this request holds it: then the write is refused
    /// ([`Saved::Fenced`]) unless that is still the session's last token.
    Update {
        base: Option<&'a Loaded>,
        fence: Option<u64>,
    },
    /// Move the session from `from` to a fresh id, deleting `from` in the same write.
    Cycle { from: &'a KeyId },
}

/// What a save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Saved {
    /// Written; the session now lives this many milliseconds (until `expires_at`, unix ms on the
    /// store's clock), at this `$version`, holding this many bytes of user fields.
    Written {
        ttl_ms: i64,
        expires_at: i64,
        version: u64,
        size: usize,
    },
    /// The session no longer exists (destroyed or expired); nothing was written.
    Gone,
    /// The fresh id is taken; nothing was written.
    Collision,
    /// The change would grow the session past the limit; nothing was written.
    TooLarge,
    /// The save carried a fencing token, and another request has taken the session's lock since
    /// (this one's expired); nothing was written.
    Fenced,
}

/// What an increment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incremented {
    /// Applied; the field now holds this.
    To(i64),
    /// The session no longer exists (destroyed or expired); nothing was written.
    Gone,
    /// The field holds this, which is not an integer; nothing was written.
    NotInteger(String),
    /// The session would grow past the limit; nothing was written.
    TooLarge,
}

/// A step of a session's lock (`$lock`, `$fence`), each atomic on the session's own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockOp {
    /// Take the lock for `ttl_ms` unless another holder's lock is still running.
    Take { ttl_ms: i64 },
    /// Extend the holder's lock to `ttl_ms` from now, if it is still theirs.
    Renew { token: u64, ttl_ms: i64 },
    /// Free the lock, if it is still the holder's.
    Release { token: u64 },
}

/// What a lock step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// The lock is this holder's, under this fencing token (taken, renewed or released).
    Ours(u64),
    /// Another holder's lock runs for this many more milliseconds; nothing was written.
    Busy { left_ms: i64 },
    /// The lock is no longer this holder's (it expired, and another took it or freed it).
    NotOurs,
    /// No live session under the key.
    Gone,
}

/// Where a [`SessionLayer`](crate::SessionLayer) keeps sessions: Redis, or this process's memory.
///
/// It is an enum rather than a trait because the crate's guarantees (delta writes checked against
/// the stored session, no resurrection, the size limit) live inside each backend's atomic write;
/// a store brought from outside could not keep them. Pass either store straight to the layer, or
/// build this with `.into()`.
///
/// # Examples
///
/// ```
/// use axum_redis_session::{Backend, MemoryStore};
///
/// let backend: Backend = MemoryStore::default().into();
/// assert!(matches!(backend, Backend::Memory(_)));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Backend {
    /// Sessions in Redis, shared by every instance of the application.
    Redis(RedisStore),
    /// Sessions in this process only: for local runs and tests.
    Memory(MemoryStore),
    /// Sessions in Redis in another framework's format, shared with an app in that framework.
    Foreign(ForeignStore),
}

impl From<ForeignStore> for Backend {
    fn from(store: ForeignStore) -> Self {
        Self::Foreign(store)
    }
}

impl From<RedisStore> for Backend {
    fn from(store: RedisStore) -> Self {
        Self::Redis(store)
    }
}

impl From<MemoryStore> for Backend {
    fn from(store: MemoryStore) -> Self {
        Self::Memory(store)
    }
}

// The Redis store's futures are boxed where they are awaited: they are large (fred's commands, the
// near-cache), and inline they would make every request's future that large, copied whole into
// the box the service returns, for requests that never touch the store too.
impl Backend {
    /// Reads a live session and rolls its idle TTL when it has run below the touch threshold (a
    /// second round trip, at most once per tenth of the idle timeout). An expired session (idle or
    /// absolute) is `None`.
    pub(crate) async fn load(&self, key: &KeyId, limits: &Limits) -> Result<Option<Loaded>, Error> {
        match self {
            Self::Redis(store) => Box::pin(store.load(key, limits)).await,
            Self::Memory(store) => Ok(store.load(key, limits)),
            Self::Foreign(store) => Box::pin(store.load(key, limits)).await,
        }
    }

    /// Applies `changes` atomically under `mode`'s precondition, sets the TTL (never past the
    /// absolute deadline) and keeps the owner's index in step. Nothing is written unless the result
    /// is [`Saved::Written`]. An update never binds a user: a login always moves the session to a
    /// fresh id ([`SaveMode::Cycle`]) or starts one ([`SaveMode::New`]).
    pub(crate) async fn save(
        &self,
        key: &KeyId,
        mode: SaveMode<'_>,
        changes: &Changes,
        limits: &Limits,
    ) -> Result<Saved, Error> {
        match self {
            Self::Redis(store) => Box::pin(store.save(key, mode, changes, limits)).await,
            Self::Memory(store) => Ok(store.save(key, mode, changes, limits)),
            Self::Foreign(store) => Box::pin(store.save(key, mode, changes, limits)).await,
        }
    }

    /// Adds `by` to the integer under `field` of a live session, atomically, returning the new
    /// value; an absent field counts as 0. Never creates the session.
    pub(crate) async fn increment(
        &self,
        key: &KeyId,
        field: &str,
        by: i64,
        limits: &Limits,
    ) -> Result<Incremented, Error> {
        match self {
            Self::Redis(store) => Box::pin(store.increment(key, field, by, limits)).await,
            Self::Memory(store) => Ok(store.increment(key, field, by, limits)),
            Self::Foreign(store) => Box::pin(store.increment(key, field, by, limits)).await,
        }
    }

    /// One step of a session's lock, atomic on the session's key; never creates the session.
    pub(crate) async fn lock_session(&self, key: &KeyId, op: LockOp) -> Result<Locked, Error> {
        match self {
            Self::Redis(store) => Box::pin(store.lock_session(key, op)).await,
            Self::Memory(store) => Ok(store.lock_session(key, op)),
            Self::Foreign(_) => Err(native_only("a session lock")),
        }
    }

    /// What the metrics read of the store's near-cache, if it has one.
    pub(crate) fn near_cache_gauges(&self) -> Option<NearCacheGauges> {
        match self {
            Self::Redis(store) => store.near_cache_gauges(),
            Self::Memory(_) | Self::Foreign(_) => None,
        }
    }

    /// Deletes a session and its index entry; deleting a missing session is not an error. `None`
    /// when no session was there, else the user it was bound to, if any.
    pub(crate) async fn destroy(&self, key: &KeyId) -> Result<Option<Option<String>>, Error> {
        match self {
            Self::Redis(store) => Box::pin(store.destroy(key)).await,
            Self::Memory(store) => Ok(store.destroy(key)),
            Self::Foreign(store) => Box::pin(store.destroy(key)).await,
        }
    }

    /// The live sessions bound to `user` (those logged in, which carry a device handle).
    pub(crate) async fn devices(&self, user: &str) -> Result<Vec<Listed>, Error> {
        match self {
            Self::Redis(store) => Box::pin(store.devices(user)).await,
            Self::Memory(store) => Ok(store.devices(user)),
            Self::Foreign(_) => Err(native_only("the device list")),
        }
    }

    /// Ends `user`'s sessions that carry `handle`, returning their key ids: none when no session of
    /// the user has it.
    pub(crate) async fn end_device(
        &self,
        user: &str,
        handle: &str,
        limits: &Limits,
    ) -> Result<Vec<String>, Error> {
        match self {
            Self::Redis(store) => Box::pin(store.end_device(user, handle, limits)).await,
            Self::Memory(store) => Ok(store.end_device(user, handle)),
            Self::Foreign(_) => Err(native_only("the device list")),
        }
    }

    /// Ends every session bound to `user` but `current` (the asking session).
    pub(crate) async fn end_other_devices(
        &self,
        user: &str,
        current: &KeyId,
        limits: &Limits,
    ) -> Result<(), Error> {
        match self {
            Self::Redis(store) => Box::pin(store.end_other_devices(user, current, limits)).await,
            Self::Memory(store) => {
                store.end_other_devices(user, current);
                Ok(())
            }
            Self::Foreign(_) => Err(native_only("the device list")),
        }
    }

    /// Deletes every session bound to `user`, and `current` (the asking session) in any case.
    pub(crate) async fn destroy_user(
        &self,
        user: &str,
        current: &KeyId,
        limits: &Limits,
    ) -> Result<(), Error> {
        match self {
            Self::Redis(store) => Box::pin(store.destroy_user(user, current, limits)).await,
            Self::Memory(store) => {
                store.destroy_user(user, current);
                Ok(())
            }
            Self::Foreign(_) => Err(native_only("logging a user out everywhere")),
        }
    }
}

/// What a foreign format cannot do: it keeps no index of a user's sessions and no lock of ours.
fn native_only(what: &'static str) -> Error {
    Error::Unsupported { what }
}

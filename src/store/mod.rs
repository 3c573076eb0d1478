//! Where sessions live. Both backends keep the same contract, spelled out on [`SessionStore`]'s
//! methods, and pass the same behaviour suite.

mod memory;
mod redis;

use std::collections::{BTreeMap, HashMap};

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
use crate::config::Config;
use crate::error::Error;
use crate::id::KeyId;

/// Hash fields owned by the crate start with this; user keys may not.
pub(crate) const RESERVED_PREFIX: char = '$';
/// Flash values live under reserved names, so they never collide with user keys.
pub(crate) const FLASH_PREFIX: &str = "$flash:";
pub(crate) const USER_FIELD: &str = "$user";
pub(crate) const CREATED_FIELD: &str = "$created";
pub(crate) const DEADLINE_FIELD: &str = "$deadline";
/// When the session's TTL runs out (unix ms), as of its last write or touch: lets a read decide
/// whether to roll the TTL without asking Redis.
pub(crate) const EXPIRES_FIELD: &str = "$expires";

/// A session as loaded: its fields (user keys and flash values, as JSON text) and its owner.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) fields: HashMap<String, String>,
    pub(crate) user: Option<String>,
    /// Time to live after this load, in milliseconds.
    pub(crate) ttl_ms: i64,
    /// Whether this load rolled the TTL (so a persistent cookie needs a fresh `Max-Age`).
    pub(crate) touched: bool,
}

impl Loaded {
    /// Splits a stored hash into user fields and the crate's metadata, reusing its map.
    fn from_hash(mut fields: HashMap<String, String>, ttl_ms: i64, touched: bool) -> Self {
        let user = fields.remove(USER_FIELD);
        fields.retain(|field, _| !is_metadata(field));
        Self {
            fields,
            user,
            ttl_ms,
            touched,
        }
    }
}

/// Crate metadata, as opposed to user keys and flash values.
fn is_metadata(field: &str) -> bool {
    field.starts_with(RESERVED_PREFIX) && !field.starts_with(FLASH_PREFIX)
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
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        !self.clear && self.fields.is_empty() && self.user.is_none()
    }

    /// These changes applied to a whole stored session (metadata included), as the fields of a new
    /// session: what a session moved to another key must hold.
    pub(crate) fn moved_onto(&self, stored: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut fields: BTreeMap<String, Option<String>> = stored
            .into_iter()
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
            clear: false,
            fields,
            user: self.user.clone(),
        }
    }
}

/// How a save relates to what the store already holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SaveMode<'a> {
    /// A fresh id: written only if the key is free.
    New,
    /// An existing session: written only if it still exists.
    Update,
    /// Move the session from `from` to a fresh id, deleting `from` in the same write.
    Cycle { from: &'a KeyId },
}

/// What a save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Saved {
    /// Written; the session now lives this many milliseconds.
    Written { ttl_ms: i64 },
    /// The session no longer exists (destroyed or expired); nothing was written.
    Gone,
    /// The fresh id is taken; nothing was written.
    Collision,
    /// The change would grow the session past the limit; nothing was written.
    TooLarge,
}

/// The backend a [`SessionLayer`](crate::SessionLayer) keeps sessions in: a [`RedisStore`] or a
/// [`MemoryStore`]. Build it with `.into()` or pass either store straight to the layer.
///
/// # Examples
///
/// ```
/// use axum_redis_session::{MemoryStore, SessionStore};
///
/// let store: SessionStore = MemoryStore::default().into();
/// ```
#[derive(Clone, Debug)]
pub struct SessionStore(Backend);

#[derive(Clone, Debug)]
enum Backend {
    Redis(RedisStore),
    Memory(MemoryStore),
}

impl From<RedisStore> for SessionStore {
    fn from(store: RedisStore) -> Self {
        Self(Backend::Redis(store))
    }
}

impl From<MemoryStore> for SessionStore {
    fn from(store: MemoryStore) -> Self {
        Self(Backend::Memory(store))
    }
}

impl SessionStore {
    /// Reads a live session and rolls its idle TTL when it has run below the touch threshold (a
    /// second round trip, at most once per tenth of the idle timeout). An expired session (idle or
    /// absolute) is `None`.
    pub(crate) async fn load(&self, key: &KeyId, config: &Config) -> Result<Option<Loaded>, Error> {
        match &self.0 {
            Backend::Redis(store) => store.load(key, config).await,
            Backend::Memory(store) => Ok(store.load(key, config)),
        }
    }

    /// Applies `changes` atomically under `mode`'s precondition, sets the TTL (never past the
    /// absolute deadline) and keeps the owner's index in step. Nothing is written unless the result
    /// is [`Saved::Written`].
    pub(crate) async fn save(
        &self,
        key: &KeyId,
        mode: SaveMode<'_>,
        changes: &Changes,
        config: &Config,
    ) -> Result<Saved, Error> {
        match &self.0 {
            Backend::Redis(store) => store.save(key, mode, changes, config).await,
            Backend::Memory(store) => Ok(store.save(key, mode, changes, config)),
        }
    }

    /// Deletes a session and its index entry; deleting a missing session is not an error.
    pub(crate) async fn destroy(&self, key: &KeyId, config: &Config) -> Result<(), Error> {
        match &self.0 {
            Backend::Redis(store) => store.destroy(key, config).await,
            Backend::Memory(store) => {
                store.destroy(key, config);
                Ok(())
            }
        }
    }

    /// Deletes every session bound to `user`.
    pub(crate) async fn destroy_user(&self, user: &str, config: &Config) -> Result<(), Error> {
        match &self.0 {
            Backend::Redis(store) => store.destroy_user(user, config).await,
            Backend::Memory(store) => {
                store.destroy_user(user, config);
                Ok(())
            }
        }
    }
}

//! Where the stored layout is decided: the key of a session and of a user's index, and how a
//! session's value is laid out (one field per session key holding its JSON text, crate metadata
//! under `$`-prefixed fields). Both stores keep sessions in this shape, and every Lua script is
//! given the metadata names from [`METADATA`], so there is one spelling of each. The cookie's side
//! of the layout (token to key id) is `id.rs`'s.

use std::collections::HashMap;
use std::sync::Arc;

use super::Loaded;

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
/// Bytes of the session's user fields (names and values), kept up to date by every save so that a
/// save need not read the whole session to enforce the size limit.
pub(crate) const SIZE_FIELD: &str = "$size";
/// Bumped by every save: a reader holding version `n` that saved and got back `n + 1` knows that
/// nobody else wrote in between.
pub(crate) const VERSION_FIELD: &str = "$version";
/// On a cluster, the user's revocation epoch that a bound session was logged in under (absent: 0).
/// Its new id after a cycle enters the user's index only while this is still the user's epoch, so
/// that a logout-everywhere racing the cycle cannot miss it (see `revoke.lua` and `index.lua`).
pub(crate) const EPOCH_FIELD: &str = "$epoch";

/// From the request that logged the session in: its `User-Agent` (at most [`USER_AGENT_MAX`]
/// bytes) and, when the layer records them, its client's IP. Listed by
/// [`Session::devices`](crate::Session::devices); raw text, not JSON.
pub(crate) const USER_AGENT_FIELD: &str = "$ua";
pub(crate) const IP_FIELD: &str = "$ip";
/// The most of a `User-Agent` a session keeps: a header can be kilobytes, a device list needs a line.
pub(crate) const USER_AGENT_MAX: usize = 256;
/// When a request last loaded the session (unix ms): set at login and moved by each TTL roll, so
/// reads write nothing more for it.
pub(crate) const SEEN_FIELD: &str = "$seen";
/// The session's handle in its user's device list: random, set at login, carried along by a cycle,
/// and neither the token nor the key id, so a listed handle gives no way into the session.
pub(crate) const HANDLE_FIELD: &str = "$handle";

/// The session's lock while a request holds it (`Session::lock`): `{token}:{expires}`, the holder's
/// fencing token and when the lock frees itself unless renewed (unix ms, the store's clock).
pub(crate) const LOCK_FIELD: &str = "$lock";
/// The last fencing token handed out: each lock taken gets this plus one, so a save carrying an
/// older token knows another holder has come since.
pub(crate) const FENCE_FIELD: &str = "$fence";

/// Every metadata field, by the name the Lua scripts know it under (`field.user`, …).
pub(crate) const METADATA: [(&str, &str); 14] = [
    ("user_agent", USER_AGENT_FIELD),
    ("ip", IP_FIELD),
    ("seen", SEEN_FIELD),
    ("handle", HANDLE_FIELD),
    ("user", USER_FIELD),
    ("created", CREATED_FIELD),
    ("deadline", DEADLINE_FIELD),
    ("expires", EXPIRES_FIELD),
    ("size", SIZE_FIELD),
    ("version", VERSION_FIELD),
    ("epoch", EPOCH_FIELD),
    ("flash", FLASH_PREFIX),
    ("lock", LOCK_FIELD),
    ("fence", FENCE_FIELD),
];

/// The key of the session with key id `id`.
pub(crate) fn session_key(prefix: &str, id: &str) -> String {
    [prefix, id].concat()
}

/// The key of `user`'s index: the key ids of the user's sessions, scored by expiry.
pub(crate) fn index_key(prefix: &str, user: &str) -> String {
    [prefix, "user:", user].concat()
}

/// A `$lock` value: the holder's fencing token and when the lock expires (unix ms).
pub(crate) fn lock_value(token: u64, expires_at: i64) -> String {
    format!("{token}:{expires_at}")
}

/// The holder's token and the expiry a `$lock` value holds; `None` for anything else.
pub(crate) fn lock_holder(value: &str) -> Option<(u64, i64)> {
    let (token, expires_at) = value.split_once(':')?;
    Some((token.parse().ok()?, expires_at.parse().ok()?))
}

/// Crate metadata, as opposed to user keys and flash values.
pub(crate) fn is_metadata(field: &str) -> bool {
    field.starts_with(RESERVED_PREFIX) && !field.starts_with(FLASH_PREFIX)
}

/// What the size limit counts: the bytes of user fields' names and values.
pub(crate) fn size_of<'a>(fields: impl IntoIterator<Item = (&'a String, &'a String)>) -> usize {
    fields
        .into_iter()
        .filter(|(field, _)| !is_metadata(field))
        .map(|(field, value)| field.len() + value.len())
        .sum()
}

/// A session hash as a read splits it: what the session holds (user fields and flash values) and the
/// metadata the read needs, decoded on the way; other metadata is not kept, nor are `$` fields this
/// version no longer writes (`$csrf`, from before CSRF secrets were derived from the token).
#[derive(Debug, Default)]
pub(crate) struct StoredHash {
    pub(crate) fields: HashMap<String, String>,
    pub(crate) user: Option<String>,
    /// It has `$created`: only a hash with it is a session.
    pub(crate) live: bool,
    pub(crate) expires_at: Option<i64>,
    pub(crate) version: u64,
    pub(crate) size: Option<usize>,
}

impl StoredHash {
    pub(crate) fn with_capacity(fields: usize) -> Self {
        Self {
            fields: HashMap::with_capacity(fields),
            ..Self::default()
        }
    }

    /// Takes in one field of the stored hash.
    pub(crate) fn add(&mut self, field: &str, value: &str) {
        match field {
            CREATED_FIELD => self.live = true,
            USER_FIELD => self.user = Some(value.to_owned()),
            EXPIRES_FIELD => self.expires_at = value.parse().ok(),
            VERSION_FIELD => self.version = value.parse().unwrap_or(0),
            SIZE_FIELD => self.size = value.parse().ok(),
            _ if is_metadata(field) => {}
            _ => {
                self.fields.insert(field.to_owned(), value.to_owned());
            }
        }
    }

    /// The session it holds, `ttl_ms` to live (until `expires_at`) after this load.
    pub(crate) fn into_loaded(self, ttl_ms: i64, expires_at: i64, touched: bool) -> Loaded {
        Loaded {
            fields: Arc::new(self.fields),
            user: self.user,
            ttl_ms,
            touched,
            cached: false,
            version: self.version,
            expires_at,
            size: self.size,
            foreign: None,
        }
    }
}

/// A metadata field of a stored hash as a number.
pub(crate) fn number(hash: &HashMap<String, String>, field: &str) -> Option<i64> {
    hash.get(field).and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_keeps_user_fields_and_flash_values_and_no_other_dollar_field() {
        let mut stored = StoredHash::default();
        for (field, value) in [
            ("count", "1"),
            ("$flash:notice", "\"hi\""),
            ("$user", "alice"),
            ("$created", "1700000000000"),
            ("$epoch", "3"),
            // What an older version kept: its CSRF token.
            ("$csrf", "0123456789abcdef0123456789abcdef"),
        ] {
            stored.add(field, value);
        }
        let kept = HashMap::from([
            ("count".to_owned(), "1".to_owned()),
            ("$flash:notice".to_owned(), "\"hi\"".to_owned()),
        ]);
        assert_eq!(stored.fields, kept);
        assert_eq!(stored.user.as_deref(), Some("alice"));
        assert!(stored.live);
    }
}

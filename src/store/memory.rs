//! An in-process store with the Redis store's semantics, for local runs and tests. Sessions are not
//! shared between processes and do not survive a restart.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::layout::{
    is_metadata, lock_holder, lock_value, number, size_of, StoredHash, CREATED_FIELD,
    DEADLINE_FIELD, FENCE_FIELD, HANDLE_FIELD, IP_FIELD, LOCK_FIELD, SEEN_FIELD, USER_AGENT_FIELD,
    USER_FIELD, VERSION_FIELD,
};
use super::ttl::{next_ttl, now_ms};
use super::{Changes, Incremented, Listed, Loaded, LockOp, Locked, SaveMode, Saved};
use crate::config::Limits;
use crate::id::KeyId;

/// Sessions kept in this process's memory.
///
/// # Examples
///
/// ```
/// use axum_redis_session::{MemoryStore, SessionLayer};
///
/// let layer = SessionLayer::new(MemoryStore::default());
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Record>,
    /// User id to the key ids bound to it, with their expiry (unix ms).
    users: HashMap<String, HashMap<String, i64>>,
    /// Expired sessions are swept once the map grows past this.
    sweep_at: usize,
}

struct Record {
    /// All hash fields, metadata included, exactly as the Redis store lays them out.
    fields: HashMap<String, String>,
    expires_at: i64,
}

impl Record {
    fn deadline(&self) -> Option<i64> {
        number(&self.fields, DEADLINE_FIELD)
    }
}

impl fmt::Debug for MemoryStore {
    // Session contents stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.lock().sessions.len())
            .finish()
    }
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below is completed before the guard drops, so a poisoned map is consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn load(&self, key: &KeyId, limits: &Limits) -> Option<Loaded> {
        let now = now_ms();
        let mut state = self.lock();
        let record = state.live(key.as_str(), now)?;
        let (ttl, touched) = next_ttl(limits, now, record.deadline(), Some(record.expires_at));
        record.expires_at = now + ttl;
        if touched {
            record.fields.insert(SEEN_FIELD.to_owned(), now.to_string());
        }
        let mut stored = StoredHash::with_capacity(record.fields.len());
        for (field, value) in &record.fields {
            stored.add(field, value);
        }
        if let (true, Some(user)) = (touched, &stored.user) {
            state.index(user, key.as_str(), now + ttl);
        }
        Some(stored.into_loaded(ttl, now + ttl, touched))
    }

    pub(crate) fn save(
        &self,
        key: &KeyId,
        mode: SaveMode<'_>,
        changes: &Changes,
        limits: &Limits,
    ) -> Saved {
        let now = now_ms();
        let mut state = self.lock();
        if !matches!(mode, SaveMode::Update { .. }) && state.live(key.as_str(), now).is_some() {
            return Saved::Collision;
        }
        let source = match mode {
            SaveMode::New => None,
            SaveMode::Update { .. } => Some(key),
            SaveMode::Cycle { from } => Some(from),
        };
        // When the TTL runs out now, for a session that is updated in place.
        let mut expires_at = None;
        let (mut fields, old_size) = match source {
            None => {
                let mut fields = HashMap::from([(CREATED_FIELD.to_owned(), now.to_string())]);
                if let Some(absolute) = limits.absolute_ms() {
                    fields.insert(DEADLINE_FIELD.to_owned(), (now + absolute).to_string());
                }
                (fields, 0)
            }
            Some(source) => match state.live(source.as_str(), now) {
                Some(record) => {
                    if let SaveMode::Update { fence, .. } = mode {
                        if fence.is_some_and(|token| !holds_fence(record, token)) {
                            return Saved::Fenced;
                        }
                        expires_at = Some(record.expires_at);
                    }
                    let mut fields = record.fields.clone();
                    if let SaveMode::Cycle { .. } = mode {
                        // The lock belongs to the old id, whose holder releases it there.
                        fields.remove(LOCK_FIELD);
                        fields.remove(FENCE_FIELD);
                    }
                    (fields, size_of(&record.fields))
                }
                None => return Saved::Gone,
            },
        };
        let old_user = fields.get(USER_FIELD).cloned();

        if changes.clear {
            fields.retain(|field, _| is_metadata(field));
        }
        for (field, value) in &changes.fields {
            match value {
                Some(value) => fields.insert(field.clone(), value.clone()),
                None => fields.remove(field),
            };
        }
        if let Some(user) = &changes.user {
            fields.insert(USER_FIELD.to_owned(), user.clone());
        }
        let version = bump_version(&mut fields);
        let size = size_of(&fields);
        if refused(limits, old_size, size) {
            return Saved::TooLarge;
        }

        let (ttl, rolled) = next_ttl(limits, now, number(&fields, DEADLINE_FIELD), expires_at);
        if rolled {
            fields.insert(SEEN_FIELD.to_owned(), now.to_string());
        }
        if let Some(source) = source {
            state.sessions.remove(source.as_str());
            if let Some(old_user) = &old_user {
                state.unindex(old_user, source.as_str());
            }
        }
        let user = fields.get(USER_FIELD).cloned();
        state.sessions.insert(
            key.as_str().to_owned(),
            Record {
                fields,
                expires_at: now + ttl,
            },
        );
        if let Some(user) = user {
            state.index(&user, key.as_str(), now + ttl);
            if let (Some(_), Some(cap)) = (&changes.user, limits.max_sessions_per_user) {
                state.cap(&user, key.as_str(), cap);
            }
        }
        state.sweep(now);
        Saved::Written {
            ttl_ms: ttl,
            expires_at: now + ttl,
            version,
            size,
        }
    }

    pub(crate) fn increment(
        &self,
        key: &KeyId,
        field: &str,
        by: i64,
        limits: &Limits,
    ) -> Incremented {
        let now = now_ms();
        let mut state = self.lock();
        let Some(record) = state.live(key.as_str(), now) else {
            return Incremented::Gone;
        };
        let current = match record.fields.get(field) {
            None => 0,
            Some(value) => match value.parse::<i64>() {
                Ok(n) => n,
                Err(_) => return Incremented::NotInteger(value.clone()),
            },
        };
        let Some(value) = current.checked_add(by) else {
            return Incremented::NotInteger(current.to_string());
        };
        let old_size = size_of(&record.fields);
        let mut fields = record.fields.clone();
        fields.insert(field.to_owned(), value.to_string());
        if refused(limits, old_size, size_of(&fields)) {
            return Incremented::TooLarge;
        }
        bump_version(&mut fields);
        let (ttl, rolled) = next_ttl(limits, now, record.deadline(), Some(record.expires_at));
        if rolled {
            fields.insert(SEEN_FIELD.to_owned(), now.to_string());
        }
        record.expires_at = now + ttl;
        record.fields = fields;
        let (user, expires_at) = (record.fields.get(USER_FIELD).cloned(), record.expires_at);
        if let Some(user) = user {
            state.index(&user, key.as_str(), expires_at);
        }
        Incremented::To(value)
    }

    /// The same steps as `lock.lua`, on the same fields.
    pub(crate) fn lock_session(&self, key: &KeyId, op: LockOp) -> Locked {
        let now = now_ms();
        let mut state = self.lock();
        let Some(record) = state.live(key.as_str(), now) else {
            return Locked::Gone;
        };
        let holder = record.fields.get(LOCK_FIELD).and_then(|v| lock_holder(v));
        let (token, expires_at) = match (op, holder) {
            (LockOp::Take { .. }, Some((_, expires_at))) if expires_at > now => {
                return Locked::Busy {
                    left_ms: expires_at - now,
                }
            }
            (LockOp::Take { ttl_ms }, _) => {
                let token = number(&record.fields, FENCE_FIELD).unwrap_or(0) as u64 + 1;
                record
                    .fields
                    .insert(FENCE_FIELD.to_owned(), token.to_string());
                (token, Some(now + ttl_ms))
            }
            (LockOp::Renew { token, ttl_ms }, Some((held, _))) if held == token => {
                (token, Some(now + ttl_ms))
            }
            (LockOp::Release { token }, Some((held, _))) if held == token => (token, None),
            (LockOp::Renew { .. } | LockOp::Release { .. }, _) => return Locked::NotOurs,
        };
        match expires_at {
            Some(at) => record
                .fields
                .insert(LOCK_FIELD.to_owned(), lock_value(token, at)),
            None => record.fields.remove(LOCK_FIELD),
        };
        Locked::Ours(token)
    }

    /// `None` when no live session was there, else the user it was bound to, if any.
    pub(crate) fn destroy(&self, key: &KeyId) -> Option<Option<String>> {
        let mut state = self.lock();
        state.live(key.as_str(), now_ms())?;
        let mut record = state.sessions.remove(key.as_str())?;
        let user = record.fields.remove(USER_FIELD);
        if let Some(user) = &user {
            state.unindex(user, key.as_str());
        }
        Some(user)
    }

    pub(crate) fn devices(&self, user: &str) -> Vec<Listed> {
        let now = now_ms();
        let mut state = self.lock();
        let keys = state.keys_of(user);
        keys.into_iter()
            .filter_map(|key| {
                let fields = &state.live(&key, now)?.fields;
                let created = number(fields, CREATED_FIELD)?;
                Some(Listed {
                    created,
                    seen: number(fields, SEEN_FIELD).unwrap_or(created),
                    user_agent: fields.get(USER_AGENT_FIELD).cloned(),
                    ip: fields.get(IP_FIELD).cloned(),
                    handle: fields.get(HANDLE_FIELD)?.clone(),
                    key_id: key,
                })
            })
            .collect()
    }

    pub(crate) fn end_device(&self, user: &str, handle: &str) -> Vec<String> {
        let mut state = self.lock();
        let keys = state.keys_of(user);
        let ended: Vec<String> = keys
            .into_iter()
            .filter(|key| {
                state
                    .sessions
                    .get(key)
                    .and_then(|r| r.fields.get(HANDLE_FIELD))
                    == Some(&handle.to_owned())
            })
            .collect();
        for key in &ended {
            state.sessions.remove(key);
            state.unindex(user, key);
        }
        ended
    }

    pub(crate) fn end_other_devices(&self, user: &str, current: &KeyId) {
        let mut state = self.lock();
        let keys = state.keys_of(user);
        for key in keys.iter().filter(|key| key.as_str() != current.as_str()) {
            state.sessions.remove(key);
            state.unindex(user, key);
        }
    }

    pub(crate) fn destroy_user(&self, user: &str, current: &KeyId) {
        let mut state = self.lock();
        for key in state.users.remove(user).unwrap_or_default().into_keys() {
            state.sessions.remove(&key);
        }
        state.sessions.remove(current.as_str());
    }
}

impl State {
    /// The session under `key` if it is still alive; an expired one is dropped on the way.
    fn live(&mut self, key: &str, now: i64) -> Option<&mut Record> {
        let expired = self.sessions.get(key).is_some_and(|record| {
            record.expires_at <= now || record.deadline().is_some_and(|d| d <= now)
        });
        if expired {
            if let Some(user) = self
                .sessions
                .remove(key)
                .and_then(|r| r.fields.get(USER_FIELD).cloned())
            {
                self.unindex(&user, key);
            }
        }
        self.sessions.get_mut(key)
    }

    /// The key ids bound to `user`.
    fn keys_of(&self, user: &str) -> Vec<String> {
        self.users
            .get(user)
            .map(|keys| keys.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn index(&mut self, user: &str, key: &str, expires_at: i64) {
        self.users
            .entry(user.to_owned())
            .or_default()
            .insert(key.to_owned(), expires_at);
    }

    /// Destroys the user's sessions beyond `cap`, those that expire first, never `keep`.
    fn cap(&mut self, user: &str, keep: &str, cap: u32) {
        let Some(keys) = self.users.get_mut(user) else {
            return;
        };
        let mut by_expiry: Vec<(i64, String)> = keys
            .iter()
            .filter(|(key, _)| key.as_str() != keep)
            .map(|(key, &at)| (at, key.clone()))
            .collect();
        by_expiry.sort();
        let excess = (by_expiry.len() + 1).saturating_sub(cap as usize);
        for (_, key) in by_expiry.into_iter().take(excess) {
            keys.remove(&key);
            self.sessions.remove(&key);
        }
    }

    fn unindex(&mut self, user: &str, key: &str) {
        if let Some(keys) = self.users.get_mut(user) {
            keys.remove(key);
            if keys.is_empty() {
                self.users.remove(user);
            }
        }
    }

    /// Drops expired sessions once the map has doubled since the last sweep, so memory stays bounded
    /// at an amortised constant cost per save.
    fn sweep(&mut self, now: i64) {
        if self.sessions.len() < self.sweep_at {
            return;
        }
        self.sessions.retain(|_, record| record.expires_at > now);
        for keys in self.users.values_mut() {
            keys.retain(|_, expires_at| *expires_at > now);
        }
        self.users.retain(|_, keys| !keys.is_empty());
        self.sweep_at = (self.sessions.len() * 2).max(1024);
    }
}

/// Bumps the session's `$version` (a new session's is 0), as every save does, and returns it.
fn bump_version(fields: &mut HashMap<String, String>) -> u64 {
    let version = fields
        .get(VERSION_FIELD)
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |v| v + 1);
    fields.insert(VERSION_FIELD.to_owned(), version.to_string());
    version
}

/// Whether `token` is still the session's last fencing token: no other request has taken its lock
/// since the one that handed it out.
fn holds_fence(record: &Record, token: u64) -> bool {
    record.fields.get(FENCE_FIELD) == Some(&token.to_string())
}

/// A change is refused when it leaves the session over the limit and larger than it was.
fn refused(limits: &Limits, old_size: usize, size: usize) -> bool {
    size > limits.max_bytes && size > old_size
}

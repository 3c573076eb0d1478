//! The store of a foreign format (DESIGN §11): sessions that another framework's app reads and
//! writes too, in its layout. The other app writes a session as one whole value, so every write of
//! ours is a compare-and-set of the value we read, with this request's delta re-applied to the
//! current value when another writer came first: our concurrent requests lose nothing, and a key
//! that is gone is never written again (no resurrection). While the other framework holds its own
//! lock on a session (phpredis' `_LOCK` key, Laravel's `block()`), we wait to write.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::format::{Document, Format};
use super::redis::{ForeignWrite, ForeignWritten};
use super::ttl::{is_fresh, now_ms};
use super::{Changes, Incremented, Loaded, RedisStore, SaveMode, Saved};
use crate::config::Limits;
use crate::error::Error;
use crate::id::KeyId;

/// Writes that found another value before giving up: each re-applies the delta to the value the
/// failed one found, so only a session rewritten this often within one request's save runs out.
const CONFLICT_ATTEMPTS: usize = 32;
/// How long a write waits while the other framework holds its lock on the session, and how often
/// it looks again (Laravel's `block()` sleeps as long between attempts).
const LOCK_WAIT: Duration = Duration::from_secs(5);
const LOCK_POLL: Duration = Duration::from_millis(50);

/// Sessions kept in another framework's format, on Redis: what
/// [`RedisStore::with_format`](crate::RedisStore::with_format) makes. Give it to
/// [`SessionLayer::new`](crate::SessionLayer::new), which then reads and writes that framework's
/// cookie too.
///
/// # Examples
///
/// ```no_run
/// use axum_redis_session::{Format, RedisStore, SessionLayer};
///
/// # async fn run() -> Result<(), axum_redis_session::Error> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_format(Format::php());
/// let layer = SessionLayer::new(store); // cookie PHPSESSID, keys PHPREDIS_SESSION:{id}
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ForeignStore {
    redis: RedisStore,
    format: Arc<Format>,
}

impl fmt::Debug for ForeignStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForeignStore")
            .field("redis", &self.redis)
            .field("format", &self.format)
            .finish()
    }
}

/// What one step of a rewrite decided.
enum Step<T> {
    /// Write the changed document; the save reports `T`.
    Write(T),
    /// Write nothing, and report `T`.
    Stop(T),
}

/// How a rewrite ended.
enum Rewritten<T> {
    Written { ttl_ms: i64, size: usize, out: T },
    Stopped(T),
    Gone,
    TooLarge,
}

impl ForeignStore {
    pub(crate) fn new(redis: RedisStore, format: Format) -> Self {
        Self {
            redis,
            format: Arc::new(format),
        }
    }

    pub(crate) fn format(&self) -> &Arc<Format> {
        &self.format
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.redis.validate_connection()?;
        self.format.validate()?;
        if self.redis.has_near_cache() {
            return Err(Error::Config {
                option: "near_cache",
                reason:
                    "serves the crate's own layout only; a foreign format reads Redis each time",
            });
        }
        Ok(())
    }

    fn key(&self, key: &KeyId) -> String {
        format!("{}{}", self.format.key_prefix(), key.as_str())
    }

    /// The value and the document it parses to; `None` (and one warning) for a value the format
    /// cannot read, which is then left as it is.
    fn parse(&self, key: &KeyId, raw: &[u8]) -> Option<Document> {
        let document = self.format.parse(raw);
        if document.is_none() {
            tracing::warn!(
                key = key.log_prefix(),
                format = self.format.name(),
                "stored session is not in its format; the request starts a new one"
            );
        }
        document
    }

    pub(crate) async fn load(&self, key: &KeyId, limits: &Limits) -> Result<Option<Loaded>, Error> {
        let redis_key = self.key(key);
        let Some((raw, ttl_ms)) = Box::pin(self.redis.foreign_read(redis_key.clone())).await?
        else {
            return Ok(None);
        };
        let Some(document) = self.parse(key, &raw) else {
            return Ok(None);
        };
        let (mut ttl_ms, mut touched) = (ttl_ms, false);
        // A key without a TTL (negative) gets one, as every key we touch must.
        if document.rolls() && !is_fresh(limits, ttl_ms) {
            let roll = ForeignWrite::Expire {
                ttl_ms: limits.idle_ms(),
            };
            match Box::pin(self.redis.foreign_write(redis_key, None, roll)).await? {
                ForeignWritten::Done(_) => (ttl_ms, touched) = (limits.idle_ms(), true),
                _ => return Ok(None),
            }
        }
        Ok(Some(Loaded {
            fields: Arc::new(document.fields()),
            user: document.user(),
            ttl_ms,
            touched,
            cached: false,
            version: 0,
            expires_at: now_ms() + ttl_ms,
            size: Some(raw.len()),
            foreign: Some(Arc::new(raw)),
        }))
    }

    pub(crate) async fn save(
        &self,
        key: &KeyId,
        mode: SaveMode<'_>,
        changes: &Changes,
        limits: &Limits,
    ) -> Result<Saved, Error> {
        let written = |ttl_ms, size| Saved::Written {
            ttl_ms,
            expires_at: now_ms() + ttl_ms,
            version: 0,
            size,
        };
        match mode {
            SaveMode::New => {
                let mut document = self.format.new_document();
                document.apply(changes);
                let value = document.encode();
                if value.len() > limits.max_bytes {
                    return Ok(Saved::TooLarge);
                }
                let ttl_ms = document.ttl_ms(limits.idle_ms());
                let create = ForeignWrite::Create {
                    value: &value,
                    ttl_ms,
                };
                Ok(match self.write(key, create).await? {
                    ForeignWritten::Done(_) => written(ttl_ms, value.len()),
                    _ => Saved::Collision,
                })
            }
            SaveMode::Update { base, .. } => {
                let current = match base.and_then(|loaded| loaded.foreign.as_deref()) {
                    Some(raw) => Some(raw.clone()),
                    None => self.read(key).await?,
                };
                let Some(current) = current else {
                    return Ok(Saved::Gone);
                };
                let change = |document: &mut Document| {
                    document.apply(changes);
                    Ok(Step::Write(()))
                };
                Ok(match self.rewrite(key, current, limits, change).await? {
                    Rewritten::Written { ttl_ms, size, .. } => written(ttl_ms, size),
                    Rewritten::Gone | Rewritten::Stopped(()) => Saved::Gone,
                    Rewritten::TooLarge => Saved::TooLarge,
                })
            }
            SaveMode::Cycle { from } => self.cycle(from, key, changes, limits).await,
        }
    }

    /// A session moved to the fresh id `to`: the new key is created with the changed value first
    /// (only if it is free), then the old one is deleted if it still holds what was read. If it
    /// changed meanwhile, the delta is re-applied to it and the new key rewritten; if it is gone,
    /// the new key goes too. The keys are on different slots, so this is no single script: a
    /// crash between the steps leaves the old session, never a resurrected one.
    async fn cycle(
        &self,
        from: &KeyId,
        to: &KeyId,
        changes: &Changes,
        limits: &Limits,
    ) -> Result<Saved, Error> {
        let Some(mut old) = self.read(from).await? else {
            return Ok(Saved::Gone);
        };
        let moved = |old: &[u8]| -> Result<Option<(Vec<u8>, i64)>, Error> {
            let Some(mut document) = self.parse(from, old) else {
                return Ok(None);
            };
            writable(&document)?;
            document.apply(changes);
            Ok(Some((document.encode(), document.ttl_ms(limits.idle_ms()))))
        };
        let Some((mut value, mut ttl_ms)) = moved(&old)? else {
            return Ok(Saved::Gone);
        };
        if value.len() > limits.max_bytes {
            return Ok(Saved::TooLarge);
        }
        let create = ForeignWrite::Create {
            value: &value,
            ttl_ms,
        };
        if self.write(to, create).await? != ForeignWritten::Done(None) {
            return Ok(Saved::Collision);
        }
        for _ in 0..CONFLICT_ATTEMPTS {
            match self
                .write(from, ForeignWrite::Delete { expected: &old })
                .await?
            {
                ForeignWritten::Done(_) => {
                    return Ok(Saved::Written {
                        ttl_ms,
                        expires_at: now_ms() + ttl_ms,
                        version: 0,
                        size: value.len(),
                    })
                }
                ForeignWritten::Changed(now) => {
                    let Some((next, next_ttl)) = moved(&now)? else {
                        break;
                    };
                    let replace = ForeignWrite::Replace {
                        expected: &value,
                        value: &next,
                        ttl_ms: next_ttl,
                    };
                    if self.write(to, replace).await? != ForeignWritten::Done(None) {
                        break;
                    }
                    (old, value, ttl_ms) = (now, next, next_ttl);
                }
                _ => break,
            }
        }
        self.write(to, ForeignWrite::Take).await?;
        Ok(Saved::Gone)
    }

    pub(crate) async fn increment(
        &self,
        key: &KeyId,
        field: &str,
        by: i64,
        limits: &Limits,
    ) -> Result<Incremented, Error> {
        let Some(current) = self.read(key).await? else {
            return Ok(Incremented::Gone);
        };
        let change = |document: &mut Document| {
            let now = match document.get(field) {
                None => Some(0),
                Some(value) => value.as_i64(),
            };
            Ok(match now.and_then(|now| now.checked_add(by)) {
                Some(next) => {
                    document.set(field, next.into());
                    Step::Write(Incremented::To(next))
                }
                None => {
                    let text = document.get(field).map(|v| v.to_string());
                    Step::Stop(Incremented::NotInteger(text.unwrap_or_default()))
                }
            })
        };
        Ok(match self.rewrite(key, current, limits, change).await? {
            Rewritten::Written { out, .. } | Rewritten::Stopped(out) => out,
            Rewritten::Gone => Incremented::Gone,
            Rewritten::TooLarge => Incremented::TooLarge,
        })
    }

    /// Deletes the session; `None` when there was none, else the user it was bound to.
    pub(crate) async fn destroy(&self, key: &KeyId) -> Result<Option<Option<String>>, Error> {
        Ok(match self.write(key, ForeignWrite::Take).await? {
            ForeignWritten::Done(Some(old)) => {
                Some(self.format.parse(&old).and_then(|document| document.user()))
            }
            _ => None,
        })
    }

    async fn read(&self, key: &KeyId) -> Result<Option<Vec<u8>>, Error> {
        let read = Box::pin(self.redis.foreign_read(self.key(key))).await?;
        Ok(read.map(|(raw, _)| raw))
    }

    /// One write on the session's key, waiting while the other framework holds its lock.
    async fn write(&self, key: &KeyId, write: ForeignWrite<'_>) -> Result<ForeignWritten, Error> {
        let lock = self.format.lock_key(key.as_str());
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        loop {
            let call = self.redis.foreign_write(self.key(key), lock.clone(), write);
            match Box::pin(call).await? {
                ForeignWritten::Locked if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(LOCK_POLL).await;
                }
                ForeignWritten::Locked => return Err(Error::LockBusy),
                written => return Ok(written),
            }
        }
    }

    /// `change` applied to the session's current value and written by compare-and-set, again on
    /// the value found each time another writer came first.
    async fn rewrite<T>(
        &self,
        key: &KeyId,
        mut current: Vec<u8>,
        limits: &Limits,
        mut change: impl FnMut(&mut Document) -> Result<Step<T>, Error>,
    ) -> Result<Rewritten<T>, Error> {
        for _ in 0..CONFLICT_ATTEMPTS {
            let Some(mut document) = self.parse(key, &current) else {
                return Ok(Rewritten::Gone);
            };
            writable(&document)?;
            let out = match change(&mut document)? {
                Step::Write(out) => out,
                Step::Stop(out) => return Ok(Rewritten::Stopped(out)),
            };
            let value = document.encode();
            if value.len() > limits.max_bytes {
                return Ok(Rewritten::TooLarge);
            }
            let ttl_ms = document.ttl_ms(limits.idle_ms());
            if ttl_ms <= 0 {
                // An express cookie that has expired: connect-redis would not store it either.
                return Ok(Rewritten::Gone);
            }
            let replace = ForeignWrite::Replace {
                expected: &current,
                value: &value,
                ttl_ms,
            };
            match self.write(key, replace).await? {
                ForeignWritten::Done(_) => {
                    return Ok(Rewritten::Written {
                        ttl_ms,
                        size: value.len(),
                        out,
                    })
                }
                ForeignWritten::Changed(now) => current = now,
                _ => return Ok(Rewritten::Gone),
            }
        }
        Err(Error::Store(fred::error::Error::new(
            fred::error::ErrorKind::Unknown,
            "session rewritten by others on every attempt",
        )))
    }
}

/// A session holding a PHP reference is read, never written: a changed entry before the
/// reference would make it point elsewhere.
fn writable(document: &Document) -> Result<(), Error> {
    if document.is_writable() {
        Ok(())
    } else {
        Err(Error::Unsupported {
            what: "changing a PHP session that holds a reference",
        })
    }
}

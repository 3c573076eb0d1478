//! The near-cache's one seam with the store. The store's operations hand it their reads and their
//! updates, and report every key they wrote or deleted ([`Ended`]); everything the cache does to
//! stay coherent happens here, so no operation needs to know about it. Without the `near-cache`
//! feature (or with the cache off) each call goes straight through.
//!
//! `cache.rs` holds the entries and the rules that keep them honest; `tracking.rs` keeps them
//! coherent with Redis through client tracking, from a task that starts at the cache's first use,
//! and hands what it hears to the cache as `events.rs` spells it.

#[cfg(feature = "near-cache")]
mod cache;
#[cfg(feature = "near-cache")]
mod events;
#[cfg(feature = "near-cache")]
mod tracking;

use std::future::Future;

use super::RedisStore;
use crate::config::Limits;
use crate::error::Error;
use crate::store::{Changes, Loaded, Saved};

/// The keys a store call wrote or deleted, whose cached copies are no longer right. Each key is
/// recorded before its command is sent, and [`Near::end`] forgets them all once the call is over,
/// however it ended: a reply that timed out may still have been a write.
#[derive(Debug, Default)]
pub(super) struct Ended(Option<Vec<String>>);

impl Ended {
    pub(super) fn push(&mut self, key: &str) {
        if let Some(keys) = &mut self.0 {
            keys.push(key.to_owned());
        }
    }
}

/// The store's near-cache, or nothing.
#[derive(Clone, Debug, Default)]
pub(super) struct Near {
    #[cfg(feature = "near-cache")]
    cached: Option<std::sync::Arc<Cached>>,
}

#[cfg(not(feature = "near-cache"))]
impl Near {
    pub(super) fn is_on(&self) -> bool {
        false
    }

    pub(super) fn ended(&self) -> Ended {
        Ended(None)
    }

    pub(super) fn end(&self, _ended: Ended) {}

    pub(super) fn gauges(&self) -> Option<crate::metrics::NearCacheGauges> {
        None
    }

    pub(super) async fn ready(&self, _store: &RedisStore) {}

    pub(super) async fn load(
        &self,
        _store: &RedisStore,
        _key: &str,
        _limits: &Limits,
        read: impl Future<Output = Result<Option<Loaded>, Error>>,
    ) -> Result<Option<Loaded>, Error> {
        read.await
    }

    pub(super) async fn update(
        &self,
        _key: &str,
        _changes: &Changes,
        write: impl Future<Output = Result<Saved, Error>>,
    ) -> Result<Saved, Error> {
        write.await
    }
}

/// The cache, and the task that keeps it coherent once started; the task ends with the last clone
/// of the store.
#[cfg(feature = "near-cache")]
#[derive(Debug)]
struct Cached {
    cache: cache::NearCache,
    supervisor: std::sync::OnceLock<tracking::Supervisor>,
}

#[cfg(feature = "near-cache")]
impl Cached {
    /// The task that keeps the cache coherent, started on first use with the store's connection,
    /// key prefix and command timeout as they are by then.
    fn supervisor(&self, store: &RedisStore) -> &tracking::Supervisor {
        self.supervisor.get_or_init(|| {
            let watched = tracking::Watched {
                clients: store.connection.clients(),
                prefix: store.key_prefix.to_string(),
                timeout: store.command_timeout,
            };
            tracking::supervise(self.cache.clone(), watched)
        })
    }
}

#[cfg(feature = "near-cache")]
impl Near {
    /// A cache of at most `max_entries` sessions; `0` for none.
    pub(super) fn new(max_entries: usize) -> Self {
        let cached = (max_entries > 0).then(|| Cached {
            cache: cache::NearCache::new(max_entries),
            supervisor: std::sync::OnceLock::new(),
        });
        Self {
            cached: cached.map(std::sync::Arc::new),
        }
    }

    pub(super) fn is_on(&self) -> bool {
        self.cached.is_some()
    }

    /// The cache's state for the metrics. They hold the cache weakly: metrics kept after the
    /// store is gone do not keep its tracking task alive.
    pub(super) fn gauges(&self) -> Option<crate::metrics::NearCacheGauges> {
        let cached = std::sync::Arc::downgrade(self.cached.as_ref()?);
        Some(std::sync::Arc::new(move || {
            cached.upgrade().map(|cached| cached.cache.gauges())
        }))
    }

    pub(super) fn ended(&self) -> Ended {
        Ended(self.cached.as_ref().map(|_| Vec::new()))
    }

    /// Forgets what a store call ended: with NOLOOP, Redis does not tell a connection about its own
    /// writes.
    pub(super) fn end(&self, ended: Ended) {
        if let (Some(cached), Some(keys)) = (&self.cached, ended.0) {
            for key in keys {
                cached.cache.invalidate(&key);
            }
        }
    }

    /// Returns once tracking is on, or once setting it up has failed (reads then go to Redis);
    /// starts it if no read has yet. The caller bounds the wait.
    pub(super) async fn ready(&self, store: &RedisStore) {
        if let Some(cached) = &self.cached {
            cached.supervisor(store).settled().await;
        }
    }

    /// A session from the cache when it holds it fresh (no round trip), else `read`, whose reply
    /// fills the cache unless an invalidation raced it. Starts keeping the cache coherent on first
    /// use, with the store's settings as they are by then.
    pub(super) async fn load(
        &self,
        store: &RedisStore,
        key: &str,
        limits: &Limits,
        read: impl Future<Output = Result<Option<Loaded>, Error>>,
    ) -> Result<Option<Loaded>, Error> {
        let Some(cached) = &self.cached else {
            return read.await;
        };
        cached.supervisor(store);
        let cache = &cached.cache;
        let now = crate::store::ttl::now_ms();
        if let Some(entry) = cache.get(key, now) {
            let remaining = entry.expires_at - now;
            // A TTL running low is rolled by a read from Redis, as without the cache.
            if crate::store::ttl::is_fresh(limits, remaining) {
                return Ok(Some(Loaded {
                    ttl_ms: remaining,
                    touched: false,
                    cached: true,
                    ..Loaded::clone(&entry)
                }));
            }
        }
        let fill = cache.begin_fill(key);
        let read = read.await;
        if let Some(fill) = fill {
            cache.finish_fill(fill, read.as_ref().ok().cloned().flatten());
        }
        read
    }

    /// An update of a live session: a session this process holds hot stays hot after its own save
    /// when the save's version shows that nobody else wrote in between; otherwise it is forgotten.
    pub(super) async fn update(
        &self,
        key: &str,
        changes: &Changes,
        write: impl Future<Output = Result<Saved, Error>>,
    ) -> Result<Saved, Error> {
        let Some(cached) = &self.cached else {
            return write.await;
        };
        let cache = &cached.cache;
        let base = cache.get(key, crate::store::ttl::now_ms());
        let fill = cache.begin_fill(key);
        let saved = write.await;
        let refreshed = match (&saved, base) {
            (Ok(saved @ Saved::Written { version, .. }), Some(base))
                if base.version + 1 == *version =>
            {
                cache::after_save(&base, changes, saved)
            }
            _ => None,
        };
        match fill {
            Some(fill) => cache.finish_fill(fill, refreshed),
            None => cache.invalidate(key),
        }
        saved
    }
}

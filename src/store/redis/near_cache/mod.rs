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
                return Ok(Some(hit(&entry, remaining)));
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

/// What a request gets from a cached entry: the entry's fields shared, not copied.
#[cfg(feature = "near-cache")]
fn hit(entry: &Loaded, remaining_ms: i64) -> Loaded {
    Loaded {
        ttl_ms: remaining_ms,
        touched: false,
        cached: true,
        ..entry.clone()
    }
}

#[cfg(all(test, feature = "near-cache"))]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::store::ttl::now_ms;

    /// A store's cache that serves, holding `key`, and its listener's sender (dropped, it would
    /// end the epoch).
    fn serving_with(key: &str) -> (Near, tokio::sync::broadcast::Sender<Vec<String>>) {
        let near = Near::new(10);
        let cache = &near.cached.as_ref().unwrap().cache;
        let (sender, listener) = tokio::sync::broadcast::channel::<Vec<String>>(4);
        let epoch = cache.begin_epoch(vec![Box::new(listener)], Vec::new());
        assert!(cache.confirm(epoch));
        cache.renew_lease(Instant::now());
        let fill = cache.begin_fill(key).unwrap();
        let entry = Loaded {
            expires_at: i64::MAX,
            ..Loaded::default()
        };
        cache.finish_fill(fill, Some(entry));
        assert!(cache.get(key, now_ms()).is_some());
        (near, sender)
    }

    fn holds(near: &Near, key: &str) -> bool {
        let cache = &near.cached.as_ref().unwrap().cache;
        cache.get(key, now_ms()).is_some()
    }

    #[test]
    fn a_hit_shares_the_cached_fields() {
        let entry = Loaded {
            fields: Arc::new([("count".to_owned(), "1".to_owned())].into()),
            ..Loaded::default()
        };
        let served = hit(&entry, 5);
        assert!(Arc::ptr_eq(&served.fields, &entry.fields));
        assert_eq!((served.ttl_ms, served.cached), (5, true));
    }

    /// A write whose reply never came (a timeout) may still have landed: the cached copy goes,
    /// as it does for every key a failed call recorded.
    #[tokio::test]
    async fn a_write_that_failed_forgets_what_it_may_have_changed() {
        let (near, _listener) = serving_with("k");
        let timed_out = async {
            let error = fred::error::Error::new(fred::error::ErrorKind::Timeout, "timed out");
            Err(Error::Store(error))
        };
        assert!(near
            .update("k", &Changes::default(), timed_out)
            .await
            .is_err());
        assert!(!holds(&near, "k"));

        let (near, _listener) = serving_with("k");
        let mut ended = near.ended();
        ended.push("k");
        near.end(ended);
        assert!(!holds(&near, "k"));
    }
}

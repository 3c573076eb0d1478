//! One application instance with a near-cache: the demo's routes on a store of its own built from a
//! URL, as two pods would each have one.

use std::time::{Duration, Instant};

use axum::Router;
use axum_redis_session::{RedisStore, SessionLayer};

use super::{app, Browser, Gate};

/// One application instance: the demo's routes on a store of its own with a near-cache.
pub struct Instance {
    pub app: Router,
    pub layer: SessionLayer,
    pub store: RedisStore,
}

impl Instance {
    /// The store users build: a URL, then the cache.
    pub async fn start(url: &str, configure: impl FnOnce(SessionLayer) -> SessionLayer) -> Self {
        let store = RedisStore::connect(url)
            .await
            .unwrap()
            .with_command_timeout(time::Duration::milliseconds(300))
            .with_near_cache(1000);
        let layer = configure(SessionLayer::new(store.clone()));
        Self {
            app: app(layer.clone(), Gate::default()),
            layer,
            store,
        }
    }

    /// Polls the store's `ready()` as a readiness probe would, until it says ready (connections up,
    /// scripts loaded, the near-cache's tracking on); returns how long that took.
    pub async fn ready(&self, limit: Duration) -> Duration {
        let started = Instant::now();
        while let Err(error) = self.store.ready().await {
            assert!(
                started.elapsed() < limit,
                "not ready within {limit:?}: {error}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        started.elapsed()
    }

    pub fn browser(&self, cookie: Option<String>) -> Browser {
        Browser::with_cookie(self.app.clone(), cookie)
    }

    pub fn hits(&self) -> u64 {
        self.layer.metrics().snapshot().cache_hits
    }

    /// Reads `path` until a read is served by the cache (tracking is set up in the background, once
    /// the store's connections are up: on a cluster that can take seconds).
    pub async fn warm(&self, browser: &mut Browser, path: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let before = self.hits();
            let reply = browser.get(path).await;
            if self.hits() > before {
                return reply.body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never served by the cache"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

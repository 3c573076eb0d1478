//! The Redis store: the only place that knows a Redis command.
//!
//! A session is one hash at `{prefix}{key id}` (see `store/layout.rs`), and each user a session is
//! bound to has a sorted set `{prefix}user:{id}` of key ids scored by expiry (on a cluster, also
//! holding the user's revocation epoch: see `lua/revoke.lua`). A read is one plain `HGETALL`; every
//! write is one Lua script run by `EVALSHA` (falling back to `EVAL` once the server has forgotten
//! it); every call runs under the command timeout.
//!
//! - `mod.rs`: the public type and its builders;
//! - `conn.rs`: connections, and how a command is sent, bounded and boxed;
//! - `scripts.rs` and `lua/`: each script, its arguments and the decoder of its reply;
//! - `loader.rs`: every script kept loaded on every server, before a request needs it;
//! - `ops.rs`: the operations on one session, each one round trip on its slot;
//! - `fast_update.rs`: the common write, a change of user fields to a session as read, by a script of two or three calls;
//! - `lock.rs`: a session's lock (`lua/lock.lua`), on the session's own key;
//! - `cluster.rs`: what a cluster adds on other slots (indexes, the cycle, logout-everywhere);
//! - `near_cache/`: the near-cache behind its one seam (cargo feature `near-cache`).

mod cluster;
mod conn;
mod devices;
mod fast_update;
mod foreign;
mod loader;
mod lock;
mod near_cache;
mod ops;
mod scripts;

use std::fmt;
use std::sync::Arc;

use fred::clients::{Client, Pool};
use fred::interfaces::ClientLike;
use fred::types::config::{Config as FredConfig, ReconnectPolicy};
use fred::types::Builder;

use self::conn::Connection;
pub(crate) use self::foreign::{ForeignWrite, ForeignWritten};
use self::loader::Loader;
use self::near_cache::Near;
use crate::error::Error;
use crate::store::{ForeignStore, Format};

/// Connections a store opens itself from a URL: enough to keep two cores busy without one
/// connection's reader becoming the bottleneck.
const POOL_SIZE: usize = 2;

/// A session store on Redis (or Valkey), over a `fred` client or pool you may already have.
///
/// # Examples
///
/// ```no_run
/// use axum_redis_session::{RedisStore, SessionLayer};
///
/// # async fn run() -> Result<(), axum_redis_session::Error> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let layer = SessionLayer::new(store);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    key_prefix: Arc<str>,
    command_timeout: std::time::Duration,
    near: Near,
    loader: Arc<Loader>,
}

impl fmt::Debug for RedisStore {
    // fred's own Debug would print the server configuration, which may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.connection {
            Connection::Client(_) => "client",
            Connection::Pool(_) => "pool",
        };
        f.debug_struct("RedisStore")
            .field("connection", &kind)
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .field("near_cache", &self.near)
            .finish()
    }
}

impl RedisStore {
    /// Connects to the server(s) named by a URL in fred's syntax (`redis://host:port/db`,
    /// `rediss://…`, `redis-cluster://…`, `redis-sentinel://…`).
    ///
    /// Returns at once without waiting for the server: an application may start before Redis
    /// does, answers 503 on session routes meanwhile, and the connection keeps retrying in the
    /// background. Fails only for a URL that does not parse.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), axum_redis_session::Error> {
    /// let store = axum_redis_session::RedisStore::connect("redis://127.0.0.1:6379/0").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let mut config = FredConfig::from_url(url).map_err(|_| Error::Config {
            option: "url",
            reason: "is not a Redis URL (redis://, rediss://, redis-cluster://, redis-sentinel://)",
        })?;
        // Retry a failed first connection under the policy below instead of giving up on it.
        config.fail_fast = false;
        let pool = Builder::from_config(config)
            // max_attempts 0: keep reconnecting for as long as the application runs.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .with_connection_config(|connection| {
                connection.connection_timeout = std::time::Duration::from_secs(2);
                connection.internal_command_timeout = std::time::Duration::from_secs(2);
            })
            .build_pool(POOL_SIZE)
            .map_err(Error::Store)?;
        // The connection tasks run in the background; nothing here waits for the server.
        drop(pool.connect_pool());
        let store = Self::from_pool(pool);
        // Before the first request, so that its first write is one round trip.
        store.start_loading_scripts();
        Ok(store)
    }

    /// Uses a fred client you have built and connected yourself.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use axum_redis_session::fred::prelude::*;
    /// use axum_redis_session::RedisStore;
    ///
    /// # async fn run() -> Result<(), axum_redis_session::fred::error::Error> {
    /// let client = Builder::from_config(Config::from_url("redis://127.0.0.1:6379")?).build()?;
    /// client.init().await?;
    /// let store = RedisStore::from_client(client);
    /// # Ok(()) }
    /// ```
    pub fn from_client(client: Client) -> Self {
        Self::on(Connection::Client(client))
    }

    /// Uses a fred pool you have built and connected yourself; each command takes the next client.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use axum_redis_session::fred::prelude::*;
    /// use axum_redis_session::RedisStore;
    ///
    /// # async fn run() -> Result<(), axum_redis_session::fred::error::Error> {
    /// let pool = Builder::from_config(Config::from_url("redis://127.0.0.1:6379")?).build_pool(4)?;
    /// pool.init().await?;
    /// let store = RedisStore::from_pool(pool);
    /// # Ok(()) }
    /// ```
    pub fn from_pool(pool: Pool) -> Self {
        Self::on(Connection::Pool(pool))
    }

    fn on(connection: Connection) -> Self {
        Self {
            connection,
            key_prefix: Arc::from("session:"),
            command_timeout: std::time::Duration::from_secs(1),
            near: Near::default(),
            loader: Arc::default(),
        }
    }

    /// The prefix of every key the store writes. Default: `session:`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), axum_redis_session::Error> {
    /// let store = axum_redis_session::RedisStore::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .with_key_prefix("shop:session:");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = Arc::from(prefix.into());
        self
    }

    /// How long one store command may take before the request fails with 503. Default: 1 second.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), axum_redis_session::Error> {
    /// let store = axum_redis_session::RedisStore::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .with_command_timeout(time::Duration::milliseconds(300));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_command_timeout(mut self, timeout: time::Duration) -> Self {
        // A negative or unrepresentable timeout is caught by `validate`, naming the option.
        self.command_timeout = timeout.try_into().unwrap_or_default();
        self
    }

    /// Keeps up to `max_entries` sessions that this process read in memory, and serves them without
    /// a round trip for as long as Redis vouches that they have not changed. `0` turns it off.
    /// Default: off. The entries are also bounded in bytes, at 1 KiB per entry of `max_entries`
    /// (each counting its key, fields and owner, and at least 1 KiB): large sessions leave room
    /// for fewer.
    ///
    /// Coherent across instances and with any other Redis client: every connection that reads
    /// sessions turns on Redis's client tracking (Redis 6 or later), so a write by anyone else, a
    /// logout elsewhere, an expiry or a `FLUSHALL` removes the entry as soon as Redis announces it
    /// (microseconds on a LAN). An entry is also dropped when its session's TTL runs out, and
    /// nothing is served while the announcements might be missing: after a reconnect, a failover,
    /// a slot move, or more than a second without a heartbeat from Redis. A read served from the
    /// cache still rolls the idle timeout when it runs low; a save that this process makes keeps
    /// the entry fresh (one round trip for a read and a write).
    ///
    /// Uses one extra connection per Redis server, opened with the store's settings once the first
    /// request reads a session or [`ready`](Self::ready) is called, so this may come anywhere among
    /// the builder calls; `ready` waits until tracking is on. Needs the `near-cache` feature (on by
    /// default).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), axum_redis_session::Error> {
    /// let store = axum_redis_session::RedisStore::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .with_near_cache(100_000);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "near-cache")]
    #[must_use]
    pub fn with_near_cache(mut self, max_entries: usize) -> Self {
        self.near = Near::new(max_entries);
        self
    }

    /// Keeps sessions in another framework's format instead of the crate's own layout, so that
    /// an app in that framework shares them (DESIGN §11). The format's key prefix replaces the
    /// store's, and the layer given this store reads and writes that framework's cookie. The
    /// near-cache, session locks, the device list and logging out everywhere need the crate's own
    /// layout and are not available (a near-cache is a configuration error, the others
    /// [`Error::Unsupported`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use axum_redis_session::{Format, RedisStore, SessionLayer};
    ///
    /// # async fn run() -> Result<(), axum_redis_session::Error> {
    /// let format = Format::express(["keyboard cat"])?;
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_format(format);
    /// let layer = SessionLayer::new(store); // cookie connect.sid, keys sess:{id}
    /// # Ok(()) }
    /// ```
    pub fn with_format(self, format: Format) -> ForeignStore {
        ForeignStore::new(self, format)
    }

    /// Whether the near-cache is on.
    pub(crate) fn has_near_cache(&self) -> bool {
        self.near.is_on()
    }

    /// What the metrics read of the near-cache, if this store has one.
    pub(crate) fn near_cache_gauges(&self) -> Option<crate::metrics::NearCacheGauges> {
        self.near.gauges()
    }

    /// Rejects settings the store cannot work with, naming the option.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.key_prefix.is_empty() {
            return Err(Error::Config {
                option: "key_prefix",
                reason: "must not be empty",
            });
        }
        self.validate_connection()
    }

    /// The settings of the connection alone, which a foreign format's store shares.
    pub(crate) fn validate_connection(&self) -> Result<(), Error> {
        if self.command_timeout.is_zero() {
            return Err(Error::Config {
                option: "command_timeout",
                reason: "must be positive",
            });
        }
        Ok(())
    }

    /// Waits, at most the command timeout, until every connection of the store is up and answers:
    /// for a readiness probe, so that a new instance takes traffic only once it can serve sessions.
    /// With the near-cache, also until its tracking is on, so that hot reads are served from the
    /// first request on; a cache that cannot set it up does not make the store unready (its reads
    /// go to Redis), and after a failed attempt this call starts the next at once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), axum_redis_session::Error> {
    /// let store = axum_redis_session::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let ready = store.ready().await.is_ok(); // answer /ready with 200 or 503
    /// # Ok(()) }
    /// ```
    pub async fn ready(&self) -> Result<(), Error> {
        let clients = self.connection.clients();
        self.start_loading_scripts();
        let (loader, near) = (&self.loader, &self.near);
        self.bounded(async move {
            for client in &clients {
                let _: () = client.ping(None).await?;
            }
            loader.settled().await;
            near.ready(self).await;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::store::{Changes, LockOp, SaveMode};

    /// fred's command futures take about 6.5 KB. Held inline by the store's own futures, they were
    /// copied through every layer of every request: `memcpy` became two thirds of a read's
    /// instructions, and that came back once after it was fixed. Every store call's future stays
    /// well under the size of one of fred's.
    #[tokio::test]
    async fn store_calls_hold_no_command_future_inline() {
        let store = RedisStore::from_client(Builder::default_centralized().build().unwrap());
        let (key, limits) = (crate::id::Token::generate().key_id(true), Limits::default());
        let changes = Changes::default();
        let sizes = [
            ("load", size_of_val(&store.load(&key, &limits))),
            (
                "save",
                size_of_val(&store.save(
                    &key,
                    SaveMode::Update {
                        base: None,
                        fence: None,
                    },
                    &changes,
                    &limits,
                )),
            ),
            (
                "increment",
                size_of_val(&store.increment(&key, "n", 1, &limits)),
            ),
            ("destroy", size_of_val(&store.destroy(&key))),
            (
                "lock_session",
                size_of_val(&store.lock_session(&key, LockOp::Take { ttl_ms: 1000 })),
            ),
            (
                "destroy_user",
                size_of_val(&store.destroy_user("u", &key, &limits)),
            ),
        ];
        for (call, size) in sizes {
            assert!(size < 4096, "{call}'s future takes {size} bytes");
        }
    }

    /// The near-cache's task starts at the first read, inside the server's runtime, with the
    /// settings the store has by then: building the store needs no runtime, and the builder calls
    /// may come in any order.
    #[cfg(feature = "near-cache")]
    #[test]
    fn a_near_cache_is_set_up_outside_a_runtime_in_any_builder_order() {
        let client = Builder::default_centralized().build().unwrap();
        let store = RedisStore::from_client(client)
            .with_near_cache(10)
            .with_command_timeout(time::Duration::milliseconds(300));
        assert!(store.near.is_on());
        assert_eq!(store.command_timeout, std::time::Duration::from_millis(300));
    }
}

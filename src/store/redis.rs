//! The Redis store: the only file that knows a Redis command.
//!
//! Layout: one hash per session at `{prefix}{key id}`, one field per session key holding that value's
//! JSON text, crate metadata under `$`-prefixed fields, and a sorted set `{prefix}user:{id}` of key ids
//! scored by expiry for each user a session is bound to (on a cluster, also holding the user's
//! revocation epoch: see `revoke.lua`). A read is one plain `HGETALL`; every write is
//! one Lua script run by `EVALSHA` (falling back to `EVAL` once the server has forgotten it). Every
//! call runs under the command timeout.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use fred::clients::{Client, Pool};
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::{ClientLike, KeysInterface, LuaInterface, SortedSetsInterface};
use fred::types::config::{Config as FredConfig, Options, ReconnectPolicy};
use fred::types::scripts::Script;
use fred::types::{Builder, ClusterHash, CustomCommand, Value};

use super::near_cache::{Entry, NearCache};
use super::tracking::{self, Supervisor};
use super::{
    is_metadata, Changes, Incremented, Loaded, SaveMode, Saved, EPOCH_FIELD, EXPIRES_FIELD,
    METADATA, USER_FIELD, VERSION_FIELD,
};
use crate::config::Limits;
use crate::error::Error;
use crate::id::KeyId;

/// A script's arguments by name. The script reads them as `arg.<name>` from a table built from this
/// same list (see [`script`]), so Rust and Lua cannot disagree on their order. The script's own
/// name goes first, so `MONITOR` and `SLOWLOG` show which script ran; arguments beyond the named
/// ones (field lists) start at `ARGV[first_extra]`.
macro_rules! script_args {
    ($(#[$doc:meta])* $name:ident = $script:literal { $($field:ident),* $(,)? }) => {
        $(#[$doc])*
        struct $name {
            $($field: Value,)*
        }

        impl $name {
            const SCRIPT: &'static str = $script;
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            fn into_values(self) -> Vec<Value> {
                vec![Value::from_static_str(Self::SCRIPT), $(self.$field),*]
            }
        }
    };
}

script_args!(
    /// `touch.lua`: roll a session's idle TTL.
    TouchArgs = "touch" { idle, prefix, key_id, inline_index, track }
);
script_args!(
    /// `save.lua`: apply one request's changes. Extra: `sets` field/value pairs, then removed fields.
    SaveArgs = "save" {
        mode, idle, absolute, max_bytes, prefix, key_id, source_id, clear, user, inline_index,
        touch_below, max_per_user, track, sets,
    }
);
script_args!(
    /// `update.lua`: the lean write of user fields only. Extra: as for `save.lua`.
    UpdateArgs = "update" { idle, max_bytes, prefix, key_id, inline_index, touch_below, track, sets }
);
script_args!(
    /// `destroy.lua`: delete a session, returning what it held.
    DestroyArgs = "destroy" { prefix, key_id, inline_index }
);
script_args!(
    /// `incr.lua`: add to an integer field of a live session.
    IncrArgs = "incr" {
        field, by, idle, max_bytes, prefix, key_id, inline_index, touch_below, track,
    }
);
script_args!(
    /// `take_if.lua`: the old session of a cycle on a cluster, if unchanged.
    TakeIfArgs = "take_if" { version }
);
script_args!(
    /// `destroy_user.lua`: every session of a user, at once (one server).
    DestroyUserArgs = "destroy_user" { prefix }
);
script_args!(
    /// `index.lua`: a user's index on a cluster.
    IndexArgs = "index" { remove, add, admit, epoch, ttl, slack, cap }
);
script_args!(
    /// `revoke.lua`: bump a user's revocation epoch and list the user's sessions (cluster).
    RevokeArgs = "revoke" { ttl }
);
script_args!(
    /// `stamp.lua`: record the user's epoch in a session just logged in (cluster).
    StampArgs = "stamp" { epoch }
);

static TOUCH: LazyLock<Script> =
    LazyLock::new(|| script(TouchArgs::NAMES, include_str!("touch.lua")));
static SAVE: LazyLock<Script> = LazyLock::new(|| script(SaveArgs::NAMES, include_str!("save.lua")));
static UPDATE: LazyLock<Script> =
    LazyLock::new(|| script(UpdateArgs::NAMES, include_str!("update.lua")));
static DESTROY: LazyLock<Script> =
    LazyLock::new(|| script(DestroyArgs::NAMES, include_str!("destroy.lua")));
static INCR: LazyLock<Script> = LazyLock::new(|| script(IncrArgs::NAMES, include_str!("incr.lua")));
static TAKE_IF: LazyLock<Script> =
    LazyLock::new(|| script(TakeIfArgs::NAMES, include_str!("take_if.lua")));
static DESTROY_USER: LazyLock<Script> =
    LazyLock::new(|| script(DestroyUserArgs::NAMES, include_str!("destroy_user.lua")));
static INDEX: LazyLock<Script> =
    LazyLock::new(|| script(IndexArgs::NAMES, include_str!("index.lua")));
static REVOKE: LazyLock<Script> =
    LazyLock::new(|| script(RevokeArgs::NAMES, include_str!("revoke.lua")));
static STAMP: LazyLock<Script> =
    LazyLock::new(|| script(StampArgs::NAMES, include_str!("stamp.lua")));

/// A script from its file, behind a prelude that gives it the metadata field names (`field.user`,
/// …) and its named arguments (`arg.<name>`) from the Rust side, then the helpers of `lib.lua`.
fn script(args: &[&str], body: &str) -> Script {
    let mut lua = String::from("local field = {");
    for (name, value) in METADATA {
        let _ = write!(lua, " {name} = '{value}',");
    }
    // ARGV[1] is the script's name.
    lua.push_str(" }\nlocal arg = {");
    for (i, name) in args.iter().enumerate() {
        let _ = write!(lua, " {name} = ARGV[{}],", i + 2);
    }
    let _ = writeln!(lua, " }}\nlocal first_extra = {}", args.len() + 2);
    lua.push_str(include_str!("lib.lua"));
    lua.push_str(body);
    Script::from_lua(lua)
}

/// The most fields one write may change and still go through `update.lua`, which reads their old
/// values in a single `HMGET`.
const LEAN_UPDATE_FIELDS: usize = 64;

/// Attempts at moving a session on a cluster while other requests keep writing it.
const CYCLE_ATTEMPTS: usize = 3;

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
    near_cache: Option<Cached>,
}

/// The near-cache and the task that keeps it coherent, which ends with the last clone of the store.
#[derive(Clone, Debug)]
struct Cached {
    cache: NearCache,
    _supervisor: Arc<Supervisor>,
}

#[derive(Clone)]
enum Connection {
    Client(Client),
    Pool(Pool),
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
            .field("near_cache", &self.near_cache.as_ref().map(|c| &c.cache))
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
        let mut config = FredConfig::from_url(url).map_err(Error::Store)?;
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
        Ok(Self::from_pool(pool))
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
            near_cache: None,
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
    /// Default: off.
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
    /// Uses one extra connection per Redis server, and must be called inside a Tokio runtime, after
    /// [`with_command_timeout`](Self::with_command_timeout).
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
    #[must_use]
    pub fn with_near_cache(mut self, max_entries: usize) -> Self {
        self.near_cache = (max_entries > 0).then(|| {
            let cache = NearCache::new(max_entries);
            let clients = match &self.connection {
                Connection::Client(client) => vec![client.clone()],
                Connection::Pool(pool) => pool.clients().to_vec(),
            };
            let supervisor = tracking::supervise(cache.clone(), clients, self.command_timeout);
            Cached {
                cache,
                _supervisor: Arc::new(supervisor),
            }
        });
        self
    }

    /// Rejects settings the store cannot work with, naming the option.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.key_prefix.is_empty() {
            return Err(Error::Config {
                option: "key_prefix",
                reason: "must not be empty",
            });
        }
        if self.command_timeout.is_zero() {
            return Err(Error::Config {
                option: "command_timeout",
                reason: "must be positive",
            });
        }
        Ok(())
    }

    fn client(&self) -> &Client {
        match &self.connection {
            Connection::Client(client) => client,
            Connection::Pool(pool) => pool.next(),
        }
    }

    /// The client for commands on `key`. With the near-cache, always the same one: a key that one
    /// connection read and another wrote would lose its tracking (NOLOOP only spares the writer's
    /// own reads).
    fn client_for(&self, key: &str) -> &Client {
        match (&self.connection, &self.near_cache) {
            (Connection::Pool(pool), Some(_)) => {
                let clients = pool.clients();
                let hash = key
                    .bytes()
                    .fold(0_usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
                &clients[hash % clients.len()]
            }
            _ => self.client(),
        }
    }

    /// On a cluster, a user's index is on another slot than the user's sessions, so scripts cannot
    /// update it in the same call: the store does it with separate single-key calls instead.
    fn inline_index(&self) -> bool {
        !self.client().is_clustered()
    }

    /// A session from the near-cache when it holds it fresh (no round trip), else from Redis.
    pub(crate) async fn load(&self, key: &KeyId, limits: &Limits) -> Result<Option<Loaded>, Error> {
        let Some(Cached { cache, .. }) = &self.near_cache else {
            return Ok(self.read(key, limits).await?.map(|entry| entry.loaded));
        };
        let redis_key = self.session_key(key);
        let now = unix_ms();
        if let Some(entry) = cache.get(&redis_key, now) {
            let remaining = entry.expires_at - now;
            // A TTL running low is rolled by a read from Redis, as without the cache.
            if limits.ttl_is_fresh(remaining) {
                return Ok(Some(Loaded {
                    ttl_ms: remaining,
                    touched: false,
                    cached: true,
                    ..entry.loaded.clone()
                }));
            }
        }
        let fill = cache.begin_fill(&redis_key);
        let read = self.read(key, limits).await;
        if let Some(fill) = fill {
            cache.finish_fill(fill, read.as_ref().ok().cloned().flatten());
        }
        Ok(read?.map(|entry| entry.loaded))
    }

    /// A plain `HGETALL`: one round trip and one command. The TTL is rolled by a second call only
    /// when the `$expires` the session carries says it has run below the touch threshold.
    async fn read(&self, key: &KeyId, limits: &Limits) -> Result<Option<Entry>, Error> {
        let redis_key = self.session_key(key);
        let hash = self.hgetall(&redis_key).await?;
        if hash.is_empty() {
            return Ok(None);
        }
        let expires_at = hash
            .get(EXPIRES_FIELD)
            .and_then(|expires| expires.parse::<i64>().ok());
        let remaining = expires_at.map(|expires| expires - unix_ms());
        // Past the idle timeout means this app's clock is behind Redis's: touch rather than trust it.
        let fresh = remaining.filter(|&ms| limits.ttl_is_fresh(ms));
        let (ttl_ms, touched) = match fresh {
            Some(ms) => (ms, false),
            None => match self
                .touch(key, hash.get(USER_FIELD).map(String::as_str), limits)
                .await?
            {
                Some(ttl_ms) => (ttl_ms, true),
                None => return Ok(None),
            },
        };
        let version = hash
            .get(VERSION_FIELD)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let expires_at = match (touched, expires_at) {
            (false, Some(at)) => at,
            _ => unix_ms() + ttl_ms,
        };
        Ok(Some(Entry {
            loaded: Loaded::from_hash(hash, ttl_ms, touched),
            version,
            expires_at,
        }))
    }

    /// Rolls the idle TTL (never past the absolute deadline); `None` if the session is gone. `user`
    /// is the owner the load just read, whose index a cluster updates here rather than in the script.
    async fn touch(
        &self,
        key: &KeyId,
        user: Option<&str>,
        limits: &Limits,
    ) -> Result<Option<i64>, Error> {
        let inline_index = self.inline_index();
        let args = TouchArgs {
            idle: Value::from(limits.idle_ms()),
            prefix: self.prefix(),
            key_id: Value::from(key.as_str()),
            inline_index: flag(inline_index),
            track: self.track(),
        };
        let reply = self
            .run(&TOUCH, vec![self.session_key(key)], args.into_values())
            .await?;
        let Some(ttl_ms) = reply.as_i64() else {
            return Ok(None);
        };
        if let (false, Some(user)) = (inline_index, user) {
            self.update_index(user, None, Some((key, ttl_ms)), None)
                .await?;
        }
        Ok(Some(ttl_ms))
    }

    /// Saves, keeping the near-cache coherent: a session this process holds hot stays hot after
    /// its own save when the save's version shows that nobody else wrote in between.
    pub(crate) async fn save(
        &self,
        key: &KeyId,
        mode: SaveMode<'_>,
        changes: &Changes,
        limits: &Limits,
    ) -> Result<Saved, Error> {
        let Some(Cached { cache, .. }) = &self.near_cache else {
            return self.write(key, mode, changes, limits).await;
        };
        match mode {
            SaveMode::Update => {
                let redis_key = self.session_key(key);
                let base = cache.get(&redis_key, unix_ms());
                let fill = cache.begin_fill(&redis_key);
                let saved = self.write(key, mode, changes, limits).await;
                let refreshed = match (&saved, base) {
                    (
                        Ok(Saved::Written {
                            ttl_ms, version, ..
                        }),
                        Some(base),
                    ) if base.version + 1 == *version => {
                        Some(base.after_save(changes, *version, *ttl_ms, unix_ms()))
                    }
                    _ => None,
                };
                match fill {
                    Some(fill) => cache.finish_fill(fill, refreshed),
                    None => cache.invalidate(&redis_key),
                }
                saved
            }
            SaveMode::New => self.write(key, mode, changes, limits).await,
            SaveMode::Cycle { from } => {
                let saved = self.write(key, mode, changes, limits).await;
                cache.invalidate(&self.session_key(from));
                saved
            }
        }
    }

    async fn write(
        &self,
        key: &KeyId,
        mode: SaveMode<'_>,
        changes: &Changes,
        limits: &Limits,
    ) -> Result<Saved, Error> {
        let inline_index = self.inline_index();
        if let (SaveMode::Cycle { from }, false) = (mode, inline_index) {
            return self.cycle_across_slots(key, from, changes, limits).await;
        }
        let (saved, owners) = self
            .save_script(key, mode, changes, limits, inline_index)
            .await?;
        if let (false, Some(owners), Saved::Written { ttl_ms, .. }) = (inline_index, owners, saved)
        {
            let cap = changes.user.as_ref().and(limits.max_sessions_per_user);
            // Nothing moved, so nothing can be refused.
            self.reindex(owners, key, key, ttl_ms, cap, None).await?;
        }
        Ok(saved)
    }

    /// Cycles an id on a cluster, where the old and new keys live on different slots, so no script
    /// can do it at once. The order leaves no window in which a logout could be undone: read the
    /// session; write it, with this request's changes, under the new id (refused there for a
    /// collision or the size limit, before anything is deleted); then delete the old key, only if
    /// it still holds what was read. If a logout took it meanwhile, the new key is deleted too and
    /// the session is gone; if a write changed it, the move starts over with that write. Last, the
    /// new id enters the owner's index, which refuses it if a logout-everywhere has run since the
    /// session was logged in (its `$epoch`): then too the new key is deleted and the session gone.
    ///
    /// A logout-everywhere (L: `revoke.lua` bumps the epoch and lists the index, then each listed
    /// session is deleted) racing a cycle of a bound session S1 to S2 (C1 read S1, C2 write S2,
    /// C3 `take_if` S1, C4 `index.lua` adds S2), by where L's first step lands:
    ///
    /// | L's revoke          | S1                                  | S2                          |
    /// |---------------------|-------------------------------------|-----------------------------|
    /// | before C1           | deleted by L (C1 or C3 finds it gone) or by C3 | refused at C4, deleted |
    /// | between C1 and C4   | listed: deleted by L or by C3       | refused at C4 (epoch bumped), deleted |
    /// | after C4            | deleted by C3                       | listed by L, deleted by L   |
    ///
    /// A login to another user (or from no user) is not checked: its session is new, admitted at
    /// C4 with the epoch it then records (`stamp.lua`); a logout-everywhere before C4 does not
    /// list it, one after C4 does. A login again as the session's own user is checked as a cycle.
    async fn cycle_across_slots(
        &self,
        key: &KeyId,
        from: &KeyId,
        changes: &Changes,
        limits: &Limits,
    ) -> Result<Saved, Error> {
        let from_key = self.session_key(from);
        for _ in 0..CYCLE_ATTEMPTS {
            let old = self.hgetall(&from_key).await?;
            if old.is_empty() {
                return Ok(Saved::Gone);
            }
            let version = old.get(VERSION_FIELD).cloned().unwrap_or_default();
            let previous = old.get(USER_FIELD).cloned();
            let epoch = old.get(EPOCH_FIELD).cloned();
            let mut moved = changes.moved_onto(old);
            if changes.user.is_some() && changes.user != previous {
                // Another user's epoch; this user's is recorded once the login is indexed.
                moved.fields.remove(EPOCH_FIELD);
            }
            let (saved, owners) = self
                .save_script(key, SaveMode::New, &moved, limits, false)
                .await?;
            let Saved::Written { ttl_ms, .. } = saved else {
                return Ok(saved);
            };
            let args = TakeIfArgs {
                version: Value::from(version),
            };
            let taken = self
                .run(&TAKE_IF, vec![from_key.clone()], args.into_values())
                .await;
            self.forget(from);
            match taken?.as_str().as_deref() {
                Some("ok") => {
                    // The owner is the login's user, else the one the session moved with: the
                    // script, writing it as a new session, knows only a login's.
                    let current = owners.and_then(|o| o.current);
                    let owners = Owners {
                        current: current.or_else(|| previous.clone()),
                        previous,
                        rolled: true,
                    };
                    let cap = changes.user.as_ref().and(limits.max_sessions_per_user);
                    let admitted = self
                        .reindex(owners, from, key, ttl_ms, cap, epoch.as_deref())
                        .await?;
                    return Ok(if admitted { saved } else { Saved::Gone });
                }
                Some(outcome @ ("gone" | "changed")) => {
                    self.delete_session(key).await?;
                    if outcome == "gone" {
                        return Ok(Saved::Gone);
                    }
                }
                _ => return Err(unexpected_reply("take_if")),
            }
        }
        Err(Error::Store(FredError::new(
            ErrorKind::Unknown,
            "session kept changing while its id was being cycled",
        )))
    }

    async fn save_script(
        &self,
        key: &KeyId,
        mode: SaveMode<'_>,
        changes: &Changes,
        limits: &Limits,
        inline_index: bool,
    ) -> Result<(Saved, Option<Owners>), Error> {
        let (mode_name, source) = match mode {
            SaveMode::New => ("new", None),
            SaveMode::Update => ("update", None),
            SaveMode::Cycle { from } => ("cycle", Some(from)),
        };
        let mut keys = vec![self.session_key(key)];
        keys.extend(source.map(|from| self.session_key(from)));

        let sets: Vec<(&String, &String)> = changes
            .fields
            .iter()
            .filter_map(|(field, value)| value.as_ref().map(|value| (field, value)))
            .collect();
        let idle = Value::from(limits.idle_ms());
        let max_bytes = Value::from(i64::try_from(limits.max_bytes).unwrap_or(i64::MAX));
        let key_id = Value::from(key.as_str());
        let touch_below = Value::from(limits.touch_below_ms());
        let set_count = Value::from(sets.len() as i64);
        // Most writes change a few user fields of a live session and nothing else: they take the
        // lean script, which skips what only logins, clears and metadata need.
        let lean = matches!(mode, SaveMode::Update)
            && !changes.clear
            && changes.user.is_none()
            && changes.fields.len() <= LEAN_UPDATE_FIELDS
            && !changes.fields.keys().any(|field| is_metadata(field));
        let (script, mut args): (&'static Script, _) = if lean {
            let named = UpdateArgs {
                idle,
                max_bytes,
                prefix: self.prefix(),
                key_id,
                inline_index: flag(inline_index),
                touch_below,
                track: self.track(),
                sets: set_count,
            };
            (&UPDATE, named.into_values())
        } else {
            let named = SaveArgs {
                mode: Value::from_static_str(mode_name),
                idle,
                absolute: limits
                    .absolute_ms()
                    .map_or_else(|| Value::from_static_str(""), Value::from),
                max_bytes,
                prefix: self.prefix(),
                key_id,
                source_id: Value::from(source.map_or("", KeyId::as_str)),
                clear: flag(changes.clear),
                user: Value::from(changes.user.as_deref().unwrap_or("")),
                inline_index: flag(inline_index),
                touch_below,
                max_per_user: cap_arg(limits.max_sessions_per_user),
                track: self.track(),
                sets: set_count,
            };
            (&SAVE, named.into_values())
        };
        args.reserve(changes.fields.len() * 2);
        for (field, value) in sets {
            args.push(Value::from(field.as_str()));
            args.push(Value::from(value.as_str()));
        }
        for (field, value) in &changes.fields {
            if value.is_none() {
                args.push(Value::from(field.as_str()));
            }
        }

        let Value::Array(reply) = self.run(script, keys, args).await? else {
            return Err(unexpected_reply("save"));
        };
        let text = |i: usize| {
            reply
                .get(i)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| s.into_owned())
        };
        let number = |i: usize| reply.get(i).and_then(Value::as_i64).unwrap_or(0);
        let saved = match text(0).as_deref() {
            Some("ok") => Saved::Written {
                ttl_ms: number(1),
                version: u64::try_from(number(5)).unwrap_or(0),
                size: usize::try_from(number(6)).unwrap_or(0),
            },
            Some("gone") => Saved::Gone,
            Some("collision") => Saved::Collision,
            Some("too_large") => Saved::TooLarge,
            _ => return Err(unexpected_reply("save")),
        };
        // Sessions a login's cap evicted, already deleted by the script.
        for id in reply.iter().skip(7).filter_map(Value::as_str) {
            self.forget_id(&id);
        }
        let owners = matches!(saved, Saved::Written { .. }).then(|| Owners {
            previous: text(2),
            current: text(3),
            rolled: text(4).as_deref() == Some("1"),
        });
        Ok((saved, owners))
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
        let inline_index = self.inline_index();
        let args = IncrArgs {
            field: Value::from(field),
            by: Value::from(by),
            idle: Value::from(limits.idle_ms()),
            max_bytes: Value::from(i64::try_from(limits.max_bytes).unwrap_or(i64::MAX)),
            prefix: self.prefix(),
            key_id: Value::from(key.as_str()),
            inline_index: flag(inline_index),
            touch_below: Value::from(limits.touch_below_ms()),
            track: self.track(),
        };
        let reply = self
            .run(&INCR, vec![self.session_key(key)], args.into_values())
            .await;
        // This process's own write is not announced back to it.
        self.forget(key);
        let Value::Array(reply) = reply? else {
            return Err(unexpected_reply("incr"));
        };
        let text = |i: usize| reply.get(i).and_then(Value::as_str).map(|s| s.into_owned());
        let number = |i: usize| reply.get(i).and_then(Value::as_i64).unwrap_or(0);
        match text(0).as_deref() {
            Some("ok") => {
                let user = text(3).filter(|u| !u.is_empty());
                if let (false, Some(user), Some("1")) = (inline_index, user, text(4).as_deref()) {
                    self.update_index(&user, None, Some((key, number(2))), None)
                        .await?;
                }
                Ok(Incremented::To(number(1)))
            }
            Some("gone") => Ok(Incremented::Gone),
            Some("not_integer") => Ok(Incremented::NotInteger(text(1).unwrap_or_default())),
            Some("too_large") => Ok(Incremented::TooLarge),
            _ => Err(unexpected_reply("incr")),
        }
    }

    pub(crate) async fn destroy(&self, key: &KeyId) -> Result<(), Error> {
        let inline_index = self.inline_index();
        let taken = self.take(key, inline_index).await;
        self.forget(key);
        let taken = taken?;
        let user = taken.and_then(|fields| fields.into_iter().find(|(f, _)| f == USER_FIELD));
        if let (false, Some((_, user))) = (inline_index, user) {
            self.update_index(&user, Some(key), None, None).await?;
        }
        Ok(())
    }

    /// Deletes a session and returns what it held, or `None` if it was not alive.
    async fn take(
        &self,
        key: &KeyId,
        inline_index: bool,
    ) -> Result<Option<Vec<(String, String)>>, Error> {
        let args = DestroyArgs {
            prefix: self.prefix(),
            key_id: Value::from(key.as_str()),
            inline_index: flag(inline_index),
        };
        let keys = vec![self.session_key(key)];
        match self.run(&DESTROY, keys, args.into_values()).await? {
            Value::Null => Ok(None),
            flat => hash_pairs(flat, "destroy").map(Some),
        }
    }

    /// After a save on a cluster: the session's entry leaves its previous owner's index under `from`
    /// and joins its current owner's under `to`, one single-key call per index touched. A session
    /// moved to a new id under the same owner enters only if it was logged in under the owner's
    /// current epoch (`epoch`, the `$epoch` it carried); otherwise `to` is deleted and this returns
    /// `false`. A session that has just been bound to its owner (a login) records the owner's epoch
    /// in a call of its own, only when the owner has one (has ever logged out everywhere).
    async fn reindex(
        &self,
        owners: Owners,
        from: &KeyId,
        to: &KeyId,
        ttl_ms: i64,
        cap: Option<u32>,
        epoch: Option<&str>,
    ) -> Result<bool, Error> {
        let moved = from != to;
        match (owners.previous, owners.current) {
            // Same owner, same id, same expiry, no login: the index entry is already right.
            (Some(previous), Some(current))
                if previous == current && !moved && !owners.rolled && cap.is_none() =>
            {
                Ok(true)
            }
            (Some(previous), Some(current)) if previous == current => {
                let (removed, admit) = match moved {
                    true => (Some(from), Admit::Moved(epoch.unwrap_or(""))),
                    false => (None, Admit::Roll),
                };
                let admitted = self
                    .index(&current, removed, Some((to, ttl_ms, admit)), cap)
                    .await?;
                if admitted.is_none() {
                    self.delete_session(to).await?;
                }
                Ok(admitted.is_some())
            }
            (previous, current) => {
                if let Some(previous) = previous {
                    self.update_index(&previous, Some(from), None, None).await?;
                }
                if let Some(current) = current {
                    let admitted = self
                        .index(&current, None, Some((to, ttl_ms, Admit::Login)), cap)
                        .await?;
                    if let Some(epoch) = admitted.filter(|&epoch| epoch != 0) {
                        let args = StampArgs {
                            epoch: Value::from(epoch),
                        };
                        let stamped = self
                            .run(&STAMP, vec![self.session_key(to)], args.into_values())
                            .await;
                        self.forget(to);
                        stamped?;
                    }
                }
                Ok(true)
            }
        }
    }

    /// [`index`](Self::index) for a removal or the new expiry of an indexed session, which are
    /// never refused.
    async fn update_index(
        &self,
        user: &str,
        remove: Option<&KeyId>,
        add: Option<(&KeyId, i64)>,
        cap: Option<u32>,
    ) -> Result<(), Error> {
        let add = add.map(|(key, ttl)| (key, ttl, Admit::Roll));
        self.index(user, remove, add, cap).await.map(drop)
    }

    /// Updates one user's index with its own single-key script (cluster only), then deletes the
    /// sessions that `cap` evicted from it, each with its own single-key command. Returns the
    /// user's revocation epoch (0 for none), or `None` when `add` was refused (see [`Admit`]).
    async fn index(
        &self,
        user: &str,
        remove: Option<&KeyId>,
        add: Option<(&KeyId, i64, Admit<'_>)>,
        cap: Option<u32>,
    ) -> Result<Option<i64>, Error> {
        let (admit, epoch) = match add {
            None | Some((_, _, Admit::Roll)) => ("roll", ""),
            Some((_, _, Admit::Login)) => ("login", ""),
            Some((_, _, Admit::Moved(epoch))) => ("moved", epoch),
        };
        let args = IndexArgs {
            remove: Value::from(remove.map_or("", KeyId::as_str)),
            add: Value::from(add.map_or("", |(key, _, _)| key.as_str())),
            admit: Value::from_static_str(admit),
            epoch: Value::from(epoch),
            ttl: Value::from(add.map_or(0, |(_, ttl, _)| ttl)),
            // Slack for the index's own TTL, so not every add must rewrite it.
            slack: Value::from(add.map_or(0, |(_, ttl, _)| ttl / 10)),
            cap: cap_arg(cap),
        };
        let keys = vec![self.index_key(user)];
        let Value::Array(reply) = self.run(&INDEX, keys, args.into_values()).await? else {
            return Err(unexpected_reply("index"));
        };
        let mut reply = reply.into_iter();
        match reply
            .next()
            .and_then(|status| status.into_string())
            .as_deref()
        {
            Some("ok") => {}
            Some("revoked") => return Ok(None),
            _ => return Err(unexpected_reply("index")),
        }
        let epoch = reply.next().and_then(|epoch| epoch.as_i64()).unwrap_or(0);
        let evicted: Vec<String> = reply.filter_map(Value::into_string).collect();
        self.delete_sessions(&evicted).await?;
        Ok(Some(epoch))
    }

    /// Deletes every session of `user`, and `current` (the session asking) even if the index
    /// missed it. On one server, one script does it all at once. On a cluster, where the sessions
    /// live on other slots, one script on the index's slot bumps the user's revocation epoch and
    /// lists the index (so that a session being cycled meanwhile, not listed, is refused when it
    /// comes to be indexed: see [`Self::cycle_across_slots`]), then each session is deleted with
    /// its own single-key command, in bounded batches, and only those entries removed from the
    /// index. The epoch is kept for at least the idle timeout.
    pub(crate) async fn destroy_user(
        &self,
        user: &str,
        current: &KeyId,
        limits: &Limits,
    ) -> Result<(), Error> {
        let index = self.index_key(user);
        if self.inline_index() {
            let keys = vec![index, self.session_key(current)];
            let args = DestroyUserArgs {
                prefix: self.prefix(),
            };
            let ids = self.run(&DESTROY_USER, keys, args.into_values()).await;
            self.forget(current);
            if let Ok(Value::Array(ids)) = &ids {
                for id in ids.iter().filter_map(Value::as_str) {
                    self.forget_id(&id);
                }
            }
            return ids.map(drop);
        }
        let args = RevokeArgs {
            ttl: Value::from(limits.idle_ms()),
        };
        let ids: Vec<String> = match self
            .run(&REVOKE, vec![index.clone()], args.into_values())
            .await?
        {
            Value::Array(ids) => ids.into_iter().filter_map(Value::into_string).collect(),
            Value::Null => Vec::new(),
            _ => return Err(unexpected_reply("revoke")),
        };
        let client = self.client().with_options(&write_options());
        self.delete_sessions(&ids).await?;
        if !ids.is_empty() {
            let _: () = self.bounded(client.zrem(index.as_str(), ids)).await?;
        }
        self.delete_session(current).await
    }

    /// Deletes one session with its own single-key command, and drops it from the near-cache.
    fn delete_session<'a>(
        &'a self,
        key: &'a KeyId,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        let redis_key = self.session_key(key);
        let client = self.client_for(&redis_key);
        let deleted = self.bounded(client.del::<(), _>(redis_key));
        async move {
            let deleted = deleted.await;
            self.forget(key);
            deleted
        }
    }

    /// Deletes the sessions with these key ids, each with its own single-key command (a cluster
    /// keeps them on different slots), in pipelines of bounded size.
    async fn delete_sessions(&self, ids: &[String]) -> Result<(), Error> {
        for batch in ids.chunks(500) {
            let deleted = self.delete_batch(batch).await;
            for id in batch {
                self.forget_id(id);
            }
            deleted?;
        }
        Ok(())
    }

    /// One pipeline of `DEL`s, queued inside the bounded call so that fred's futures are boxed
    /// with it (see [`Self::bounded`]).
    fn delete_batch<'a>(
        &'a self,
        batch: &'a [String],
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        let pipeline = self.client().pipeline();
        self.bounded(async move {
            for id in batch {
                let () = pipeline.del(self.id_key(id)).await?;
            }
            pipeline.all::<Value>().await.map(drop)
        })
    }

    /// Drops the session with key id `id` from the near-cache after this process wrote it: with
    /// NOLOOP, Redis does not tell a connection about its own writes.
    fn forget_id(&self, id: &str) {
        if let Some(Cached { cache, .. }) = &self.near_cache {
            cache.invalidate(&self.id_key(id));
        }
    }

    /// [`forget_id`](Self::forget_id) for a [`KeyId`].
    fn forget(&self, key: &KeyId) {
        self.forget_id(key.as_str());
    }

    /// Runs a write script by its hash, sending its text only when the server does not know it yet.
    /// A plain function, like [`Self::hgetall`], so that fred's future is boxed before any caller's
    /// future could hold it.
    fn run(
        &self,
        script: &'static Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> impl Future<Output = Result<Value, Error>> + Send + '_ {
        let client = self.client_for(&keys[0]).with_options(&write_options());
        self.bounded(async move {
            match client
                .evalsha(script.sha1().clone(), keys.clone(), args.clone())
                .await
            {
                Err(error) if error.details().starts_with("NOSCRIPT") => {
                    let lua = script.lua().cloned().unwrap_or_default();
                    client.eval(lua, keys, args).await
                }
                result => result,
            }
        })
    }

    /// A session hash, whole. Sent as a custom command: fred's own `hgetall` first builds a map of
    /// its own, hashing every field, only for the fields to be hashed again into ours.
    fn hgetall<'a>(
        &'a self,
        key: &'a str,
    ) -> impl Future<Output = Result<HashMap<String, String>, Error>> + Send + 'a {
        let command = CustomCommand::new_static("HGETALL", ClusterHash::FirstKey, false);
        let call = self.bounded(self.client_for(key).custom::<Value, _>(command, vec![key]));
        async move { hash_of(call.await?) }
    }

    /// Bounds a store call by the command timeout even where fred would wait longer, e.g. on a
    /// client whose connection task has ended: a request must get its 503, never hang.
    ///
    /// The call is boxed here, once: fred's command futures run to kilobytes, and held inline they
    /// would be copied through every future that awaits them, on every request. Build the call in
    /// a plain function, as [`Self::run`] does: a future built inside an `async fn` keeps its room
    /// in that function's future even after it has been moved here.
    ///
    /// A call made while the store's connections are still being made (a fresh instance, a
    /// reconnect) first waits for them, within the same timeout, rather than failing at once.
    fn bounded<'a, T: 'a>(
        &self,
        call: impl Future<Output = Result<T, FredError>> + Send + 'a,
    ) -> impl Future<Output = Result<T, Error>> + Send + 'a {
        let call = Box::pin(call);
        let connecting = (!self.connected()).then(|| self.wait_for_connect());
        let call = tokio::time::timeout(self.command_timeout, async move {
            if let Some(connecting) = connecting {
                connecting.await?;
            }
            call.await
        });
        async move {
            match call.await {
                Ok(result) => result.map_err(Error::Store),
                Err(_) => Err(Error::Store(FredError::new(
                    ErrorKind::Timeout,
                    "session store timed out",
                ))),
            }
        }
    }

    fn connected(&self) -> bool {
        match &self.connection {
            Connection::Client(client) => client.is_connected(),
            Connection::Pool(pool) => pool.clients().iter().all(ClientLike::is_connected),
        }
    }

    /// The next connection attempt's result, for every client of the store.
    fn wait_for_connect(&self) -> Pin<Box<dyn Future<Output = Result<(), FredError>> + Send>> {
        match &self.connection {
            Connection::Client(client) => {
                let client = client.clone();
                Box::pin(async move { client.wait_for_connect().await })
            }
            Connection::Pool(pool) => {
                let pool = pool.clone();
                Box::pin(async move { pool.wait_for_connect().await })
            }
        }
    }

    /// Waits, at most the command timeout, until every connection of the store is up and answers:
    /// for a readiness probe, so that a new instance takes traffic only once it can serve sessions.
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
        let clients = match &self.connection {
            Connection::Client(client) => vec![client.clone()],
            Connection::Pool(pool) => pool.clients().to_vec(),
        };
        self.bounded(async move {
            for client in &clients {
                let _: () = client.ping(None).await?;
            }
            Ok(())
        })
        .await
    }

    fn session_key(&self, key: &KeyId) -> String {
        self.id_key(key.as_str())
    }

    /// [`session_key`](Self::session_key) for a key id read back from an index.
    fn id_key(&self, id: &str) -> String {
        [&*self.key_prefix, id].concat()
    }

    fn index_key(&self, user: &str) -> String {
        format!("{}user:{user}", self.key_prefix)
    }

    /// Whether the scripts must read a key again after writing it, to keep it tracked.
    fn track(&self) -> Value {
        flag(self.near_cache.is_some())
    }

    fn prefix(&self) -> Value {
        Value::from(&*self.key_prefix)
    }
}

/// An `HGETALL` reply as a map: a flat field/value array (RESP2) or a map (RESP3).
fn hash_of(reply: Value) -> Result<HashMap<String, String>, Error> {
    let text = |value: Value| {
        text_of(value).ok_or_else(|| {
            Error::Store(FredError::new(
                ErrorKind::Parse,
                "a session field is not UTF-8 text",
            ))
        })
    };
    match reply {
        Value::Array(flat) => {
            let mut hash = HashMap::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(field), Some(value)) = (flat.next(), flat.next()) {
                hash.insert(text(field)?, text(value)?);
            }
            Ok(hash)
        }
        Value::Map(map) => map
            .inner()
            .into_iter()
            .map(|(field, value)| Ok((text(Value::from(field))?, text(value)?)))
            .collect(),
        Value::Null => Ok(HashMap::new()),
        _ => Err(unexpected_reply("HGETALL")),
    }
}

/// A reply's bulk string as text; `None` if it is not UTF-8. It arrives as `Value::String` when it
/// is: copying its `str` directly avoids fred's `into_string`, which goes through `Display` (a
/// quarter of a read's conversion cost).
fn text_of(value: Value) -> Option<String> {
    match value {
        Value::String(text) => Some(String::from(&*text)),
        other => other.into_string(),
    }
}

/// Who owned a session before and after a save, for updating indexes outside the script.
#[derive(Debug)]
struct Owners {
    previous: Option<String>,
    current: Option<String>,
    /// The save rolled the TTL, so the owner's index entry must follow it.
    rolled: bool,
}

/// How a key id enters a user's index on a cluster (`index.lua`'s `admit`).
#[derive(Debug, Clone, Copy)]
enum Admit<'a> {
    /// A session already indexed, at its new expiry: never refused.
    Roll,
    /// A session just bound to the user: never refused (it is new to the user); the index returns
    /// the user's epoch for it to record.
    Login,
    /// A bound session under a new id, with the epoch it recorded ('' for none): refused if the
    /// user has logged out everywhere since.
    Moved(&'a str),
}

/// A flat field/value reply as pairs.
fn hash_pairs(flat: Value, script: &str) -> Result<Vec<(String, String)>, Error> {
    let Value::Array(flat) = flat else {
        return Err(unexpected_reply(script));
    };
    let mut flat = flat.into_iter();
    let mut pairs = Vec::with_capacity(flat.len() / 2);
    while let (Some(field), Some(value)) = (flat.next(), flat.next()) {
        match (text_of(field), text_of(value)) {
            (Some(field), Some(value)) => pairs.push((field, value)),
            _ => return Err(unexpected_reply(script)),
        }
    }
    Ok(pairs)
}

/// A per-user cap as a script argument: '' for none.
fn cap_arg(cap: Option<u32>) -> Value {
    cap.map_or_else(|| Value::from_static_str(""), |n| Value::from(i64::from(n)))
}

fn flag(on: bool) -> Value {
    Value::from_static_str(if on { "1" } else { "0" })
}

/// A write is sent once: replaying it after a dropped connection could report a cycled or created
/// session as gone or taken. The caller answers 503 instead. (The timeout is `bounded`'s.)
fn write_options() -> Options {
    Options {
        max_attempts: Some(1),
        ..Options::default()
    }
}

fn unix_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

fn unexpected_reply(call: &str) -> Error {
    Error::Store(FredError::new(
        ErrorKind::Protocol,
        format!("unexpected reply to {call}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
                size_of_val(&store.save(&key, SaveMode::Update, &changes, &limits)),
            ),
            (
                "increment",
                size_of_val(&store.increment(&key, "n", 1, &limits)),
            ),
            ("destroy", size_of_val(&store.destroy(&key))),
            (
                "destroy_user",
                size_of_val(&store.destroy_user("u", &key, &limits)),
            ),
        ];
        for (call, size) in sizes {
            assert!(size < 4096, "{call}'s future takes {size} bytes");
        }
    }
}

//! Keeps a [`NearCache`] coherent with Redis, through client tracking in redirect mode.
//!
//! Every connection that reads sessions (a "data" connection) runs
//! `CLIENT TRACKING ON REDIRECT <listener id> NOLOOP`: from then on, when anyone else changes a key
//! that connection read, Redis announces it on `__redis__:invalidate` to a listener connection of
//! ours on the same server, one per data connection. Redirect mode rather than RESP3 pushes,
//! because fred 10.1 drops the push by which Redis announces FLUSHALL, while it delivers the same
//! announcement as a channel message (an invalidation without keys). NOLOOP: our own saves do not
//! invalidate our own entries; the scripts read the key again after writing it, since a write ends
//! its tracking. (Broadcast mode would keep no per-key table, but Redis 7.0 announces a script's
//! writes even to the connection that ran it, NOLOOP or not, and every write is a script.)
//!
//! A supervisor task sets this up on every server the data clients talk to and renews the cache's
//! lease only on proof, every heartbeat: each data connection still redirects to its own listener
//! (its id, and the random name the listener took), and a canary key that every data connection
//! has just read, written then from another connection of ours, is announced to every listener. A
//! path that merely exists proves nothing: Redis accepts a redirect to a listener whose `SUBSCRIBE`
//! was refused, and a listener that a host name put on another server may share its id with a
//! stranger there. Any failure starts over (flushing the cache), as do a reconnect, a connection
//! error or a cluster change. It says how its attempts go, so that the store's `ready()` can wait
//! for the first one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::{
    ClientInterface, ClientLike, ClusterInterface, EventInterface, KeysInterface, PubsubInterface,
    TrackingInterface,
};
use fred::prelude::{Builder, Config as FredConfig, Server, ServerConfig};
use fred::types::client::Invalidation;
use fred::types::{ClusterHash, CustomCommand, Expiration, RespVersion};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::cache::{NearCache, LEASE};
use super::events::{Announcement, Inbox, Signal};

const CHANNEL: &str = "__redis__:invalidate";
/// Four heartbeats per lease: one slow proof does not stop the cache from serving.
const HEARTBEAT: Duration = Duration::from_millis(LEASE.as_millis() as u64 / 4);
/// Pause before setting up again after a failed attempt (Redis down, a failover under way),
/// doubled after each failure in a row up to [`RETRY_MAX`], so that a setup that cannot work (a
/// user refused the channel) does not make connections all the time.
const RETRY: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(8);
/// Invalidations a listener may queue before the cache must flush: generous, since a burst of
/// writes by other instances must not cost every entry.
const LISTENER_CAPACITY: usize = 4096;
/// How long a canary key outlives the supervisor that writes it every heartbeat.
const CANARY_TTL_MS: i64 = 10_000;
/// Room the tracking table must keep for the cache to serve: more keys than one server can start
/// tracking between two heartbeats. Past its limit Redis evicts keys, and an eviction during one of
/// our own commands stops tracking our key without telling us (Redis 7.0, NOLOOP).
const TABLE_HEADROOM: u64 = 100_000;
/// `tracking-table-max-keys` when `CONFIG GET` is not allowed: Redis's default.
const DEFAULT_TABLE_MAX_KEYS: u64 = 1_000_000;

/// Ends the supervisor when the last handle to the store's cache is dropped, and tells of its
/// attempts to set tracking up.
#[derive(Debug)]
pub(crate) struct Supervisor {
    task: tokio::task::AbortHandle,
    setup: watch::Receiver<Setup>,
    /// Ends the pause after a failed attempt.
    retry: Arc<Notify>,
}

/// The supervisor's latest attempt to set tracking up (the first is under way from the start), and
/// how it went.
#[derive(Clone, Copy, Debug, Default)]
struct Setup {
    attempt: u64,
    /// `None` while under way; `Some(true)` once proven (serving, or paused for want of room in
    /// the tracking table); `Some(false)` once it failed.
    done: Option<bool>,
    /// A failure was logged at `warn` and tracking has not been proven since: the next failures are
    /// logged at `debug`, and tracking on again at `info`, so that a log shows each transition once.
    warned: bool,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Supervisor {
    /// Returns once tracking is on, or once the attempt under way has failed; after a failed one,
    /// starts the next at once and waits for it. The caller bounds the wait.
    pub(crate) async fn settled(&self) {
        let mut setup = self.setup.clone();
        let now = *setup.borrow_and_update();
        let awaited = match now.done {
            Some(true) => return,
            None => now.attempt,
            Some(false) => {
                self.retry.notify_one();
                now.attempt + 1
            }
        };
        let _ = setup
            .wait_for(|s| {
                s.done == Some(true)
                    || s.attempt > awaited
                    || (s.attempt == awaited && s.done.is_some())
            })
            .await;
    }
}

/// What the supervisor keeps coherent: the data clients, the store's key prefix (the canary keys
/// go under it) and its command timeout (which bounds each step).
pub(crate) struct Watched {
    pub(crate) clients: Vec<Client>,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
}

/// Starts keeping `cache` coherent for the commands the clients send. Needs a Tokio runtime.
pub(crate) fn supervise(cache: NearCache, watched: Watched) -> Supervisor {
    // Any event on a data connection flushes the cache at once, before a reply that follows it can
    // fill an entry (fred announces a reconnect before it replays queued commands).
    cache.watch(watched.clients.iter().flat_map(events).collect());
    let (setup, setup_rx) = watch::channel(Setup::default());
    let retry = Arc::new(Notify::new());
    let retry_now = Arc::clone(&retry);
    let task = tokio::spawn(async move {
        let wake = Arc::new(Notify::new());
        // Dropped with this task, which ends them.
        let mut _wakers = JoinSet::new();
        for receiver in watched.clients.iter().flat_map(events) {
            _wakers.spawn(wake_on(receiver, Arc::clone(&wake)));
        }
        let mut pause = RETRY;
        loop {
            let Err(error) = serve(&cache, &watched, &wake, &setup).await;
            if setup.borrow().warned {
                tracing::debug!(%error, "near-cache tracking still down; starting over");
            } else {
                tracing::warn!(
                    %error,
                    "near-cache tracking not proven: no hits, reads go to Redis until it is"
                );
                pause = RETRY;
            }
            setup.send_modify(|s| {
                s.done = Some(false);
                s.warned = true;
            });
            tokio::select! {
                () = wake.notified() => {}
                () = retry_now.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(RETRY_MAX);
            cache.flush();
            setup.send_modify(|s| {
                s.attempt += 1;
                s.done = None;
            });
        }
    });
    Supervisor {
        task: task.abort_handle(),
        setup: setup_rx,
        retry,
    }
}

impl Announcement for Invalidation {
    fn into_keys(self) -> Vec<String> {
        self.keys
            .iter()
            .filter_map(|key| key.as_str().map(String::from))
            .collect()
    }
}

/// Every event of a data connection that may have cost it its tracking.
fn events(client: &Client) -> Vec<Signal> {
    vec![
        Signal::new(client.reconnect_rx()),
        Signal::new(client.error_rx()),
        Signal::new(client.cluster_change_rx()),
        Signal::new(client.unresponsive_rx()),
    ]
}

/// Wakes the supervisor on each event, and once more when the channel closes.
async fn wake_on(mut signal: Signal, wake: Arc<Notify>) {
    while signal.next().await {
        wake.notify_one();
    }
    wake.notify_one();
}

/// One epoch: listeners up, tracking on, then proofs until one fails. Never returns `Ok`.
async fn serve(
    cache: &NearCache,
    watched: &Watched,
    wake: &Arc<Notify>,
    setup: &watch::Sender<Setup>,
) -> Result<std::convert::Infallible, FredError> {
    let timeout = watched.timeout;
    let links = bounded(timeout, Links::connect(watched)).await?;
    let result = async {
        let epoch = cache.begin_epoch(
            links
                .listeners
                .values()
                .map(|listener| Box::new(listener.client.invalidation_rx()) as Box<dyn Inbox>)
                .collect(),
            links
                .listeners
                .values()
                .map(|listener| Signal::new(listener.client.error_rx()))
                .collect(),
        );
        let mut tasks = JoinSet::new();
        for listener in links.listeners.values() {
            let cache = cache.clone();
            let mut invalidations = listener.client.invalidation_rx();
            let errors = listener.client.error_rx();
            // Applies invalidations as they arrive, so they do not pile up between requests; a
            // listener's error ends the epoch.
            tasks.spawn(async move {
                while !matches!(invalidations.recv().await, Err(RecvError::Closed)) {
                    cache.drain();
                }
            });
            tasks.spawn(wake_on(Signal::new(errors), Arc::clone(wake)));
        }
        // A wake-up left from an event before now would end this epoch at once (on a fresh store:
        // its own first connection). It needs no new one: `track` and the proofs look at the
        // connections as they are now, and a data connection's event since `begin_epoch` has
        // flushed the cache, so `confirm` refuses this epoch.
        let _ = std::pin::pin!(wake.notified()).enable();
        bounded(timeout, links.track(watched)).await?;
        // Serving waits for a proof that finds room in the tracking table; while there is none,
        // the cache is paused: empty, and filled again once there is.
        let mut paused = Some(epoch);
        loop {
            let sent = Instant::now();
            let room = bounded(timeout, links.prove(watched)).await?;
            // Every change made before `sent` was announced before the canary, and so is in the
            // cache's inboxes, which it reads before it serves.
            match (room, paused) {
                (true, Some(epoch)) => {
                    cache.renew_lease(sent);
                    if !cache.confirm(epoch) {
                        return Err(interrupted());
                    }
                    paused = None;
                }
                (true, None) => cache.renew_lease(sent),
                (false, None) => {
                    tracing::warn!("Redis's tracking table is nearly full: near-cache paused");
                    paused = Some(cache.pause());
                }
                (false, Some(_)) => {}
            }
            let resumed = setup.send_if_modified(|s| s.done.replace(true).is_none());
            if resumed && setup.borrow().warned {
                tracing::info!("near-cache tracking on again");
                setup.send_modify(|s| s.warned = false);
            }
            tokio::select! {
                () = wake.notified() => return Err(interrupted()),
                () = tokio::time::sleep(HEARTBEAT) => {}
            }
        }
    }
    .await;
    links.quit().await;
    result
}

/// A connection of ours subscribed to the invalidation channel on one server, for one data
/// connection.
struct Listener {
    client: Client,
    id: i64,
    /// A random name, by which a data connection tells its listener from a client on its server
    /// that happens to have the same id.
    name: String,
}

/// A connection of ours that writes one server's canary key.
struct Prober {
    client: Client,
    canary: String,
}

/// One epoch's connections: a listener per data client and server, keyed by the client's index
/// (its keys' owner), and a prober per server.
struct Links {
    listeners: HashMap<(usize, Server), Listener>,
    probers: HashMap<Server, Prober>,
}

impl Links {
    async fn connect(watched: &Watched) -> Result<Self, FredError> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let mut links = Self {
            listeners: HashMap::new(),
            probers: HashMap::new(),
        };
        for (owner, client) in watched.clients.iter().enumerate() {
            if client.active_connections().is_empty() {
                // Still connecting (a fresh store, a reconnect): a command waits for the
                // connection, which fred lists only once it is made (after announcing it).
                let _: () = client.ping(None).await?;
            }
            let servers = client.active_connections();
            if servers.is_empty() {
                return Err(FredError::new(ErrorKind::IO, "not connected yet"));
            }
            for server in servers {
                let name = format!("session-near-cache-{run}-{owner}");
                let listener = connect_to(client, &server, watched.timeout).await?;
                listener.client_setname(name.as_str()).await?;
                let id: i64 = listener.client_id().await?;
                listener.subscribe(CHANNEL).await?;
                if !links.probers.contains_key(&server) {
                    let canary = canary_key(client, &server, &watched.prefix, &run)?;
                    let prober = connect_to(client, &server, watched.timeout).await?;
                    links.probers.insert(
                        server.clone(),
                        Prober {
                            client: prober,
                            canary,
                        },
                    );
                }
                let listener = Listener {
                    client: listener,
                    id,
                    name,
                };
                links.listeners.insert((owner, server), listener);
            }
        }
        Ok(links)
    }

    fn listener(&self, owner: usize, server: &Server) -> Result<&Listener, FredError> {
        self.listeners
            .get(&(owner, server.clone()))
            .ok_or_else(interrupted)
    }

    /// Turns tracking on for every data connection, redirected to its listener.
    async fn track(&self, watched: &Watched) -> Result<(), FredError> {
        for (owner, client) in watched.clients.iter().enumerate() {
            for server in client.active_connections() {
                let listener = self.listener(owner, &server)?;
                let _: () = client
                    .with_cluster_node(server)
                    .client_tracking("ON", Some(listener.id), None, false, false, false, true)
                    .await?;
            }
        }
        Ok(())
    }

    /// Proves, for every data connection, that it redirects to its own listener and that a change
    /// made now to a key it read reaches that listener: every data connection reads its server's
    /// canary, which is then written, and every listener must announce it. Redis announces in
    /// order, so every change made before is announced too. Says whether every server's tracking
    /// table has room.
    async fn prove(&self, watched: &Watched) -> Result<bool, FredError> {
        let mut heard: Vec<_> = self
            .listeners
            .iter()
            .map(|((_, server), listener)| {
                let canary = self.probers.get(server).map(|p| p.canary.clone());
                (listener.client.invalidation_rx(), canary)
            })
            .collect();
        let mut room = true;
        for (owner, client) in watched.clients.iter().enumerate() {
            for server in client.active_connections() {
                let listener = self.listener(owner, &server)?;
                let prober = self.probers.get(&server).ok_or_else(interrupted)?;
                let node = client.with_cluster_node(server);
                let redirect: i64 = node.client_getredir().await?;
                if redirect != listener.id {
                    return Err(FredError::new(
                        ErrorKind::Unknown,
                        "a data connection no longer redirects to its listener",
                    ));
                }
                is_our_listener(&node, listener).await?;
                let _: Option<String> = node.get(&prober.canary).await?;
                room &= table_has_room(&node).await?;
            }
        }
        for prober in self.probers.values() {
            let expiry = Some(Expiration::PX(CANARY_TTL_MS));
            let _: () = prober
                .client
                .set(&prober.canary, 1, expiry, None, false)
                .await?;
        }
        for (announced, canary) in &mut heard {
            let canary = canary.as_deref().ok_or_else(interrupted)?;
            announces(announced, canary, watched.timeout).await?;
        }
        Ok(room)
    }

    async fn quit(&self) {
        let probers = self.probers.values().map(|prober| &prober.client);
        for client in self.listeners.values().map(|l| &l.client).chain(probers) {
            let _: Result<(), _> = client.quit().await;
        }
    }
}

/// A connection of ours to `server` alone, with the data client's settings otherwise (user,
/// password, TLS). No reconnect policy: a connection that is lost is replaced, with a flush.
async fn connect_to(
    data: &Client,
    server: &Server,
    timeout: Duration,
) -> Result<Client, FredError> {
    let mut config: FredConfig = data.client_config();
    config.server = ServerConfig::Centralized {
        server: server.clone(),
    };
    config.version = RespVersion::RESP2;
    config.fail_fast = true;
    let client = Builder::from_config(config)
        .with_performance_config(|performance| {
            performance.broadcast_channel_capacity = LISTENER_CAPACITY;
        })
        .with_connection_config(|connection| {
            connection.connection_timeout = timeout;
            connection.internal_command_timeout = timeout;
        })
        .build()?;
    client.init().await?;
    Ok(client)
}

/// A key under `prefix` (which a user's ACL allows) that `server` holds (on a cluster, a hash tag
/// picks one of its slots), named after this epoch's `run` so that no other instance writes it.
fn canary_key(
    data: &Client,
    server: &Server,
    prefix: &str,
    run: &str,
) -> Result<String, FredError> {
    let key = |tag: u32| format!("{prefix}near-cache-canary:{{{tag}}}:{run}");
    let Some(routing) = data.cached_cluster_state().filter(|_| data.is_clustered()) else {
        return Ok(key(0));
    };
    let ranges: Vec<_> = routing
        .slots()
        .iter()
        .filter(|range| &range.primary == server)
        .map(|range| range.start..=range.end)
        .collect();
    (0..100_000)
        .map(key)
        .find(|key| {
            let slot = fred::util::redis_keyslot(key.as_bytes());
            ranges.iter().any(|range| range.contains(&slot))
        })
        .ok_or_else(|| {
            FredError::new(
                ErrorKind::Config,
                "no canary key under the key prefix lands on this server (does the prefix hold a hash tag?)",
            )
        })
}

/// Whether the client that `node`'s connection redirects to bears the listener's name. A user
/// refused `CLIENT LIST` leaves it to the canary, which proves the same from the other side.
async fn is_our_listener(
    node: &impl ClientInterface,
    listener: &Listener,
) -> Result<(), FredError> {
    let named = format!("name={}", listener.name);
    match node
        .client_list::<String, String>(None, Some(vec![listener.id.to_string()]))
        .await
    {
        Ok(list) if list.split_whitespace().any(|field| field == named) => Ok(()),
        Ok(_) => Err(FredError::new(
            ErrorKind::Unknown,
            "the client a data connection redirects to is not its listener (a listener reached \
             another server, where a stranger has its id?)",
        )),
        Err(error) if error.details().starts_with("NOPERM") => Ok(()),
        Err(error) => Err(error),
    }
}

/// Waits until `announced` names `canary`.
async fn announces(
    announced: &mut Receiver<Invalidation>,
    canary: &str,
    timeout: Duration,
) -> Result<(), FredError> {
    let heard = async {
        loop {
            match announced.recv().await {
                Ok(invalidation)
                    if invalidation.keys.iter().any(|k| k.as_str() == Some(canary)) =>
                {
                    return Ok(());
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Err(interrupted()),
            }
        }
    };
    tokio::time::timeout(timeout, heard)
        .await
        .unwrap_or_else(|_| {
            Err(FredError::new(
                ErrorKind::Timeout,
                "a canary write was not announced to a listener (may its user SUBSCRIBE to \
             __redis__:invalidate? does a host name reach another server?)",
            ))
        })
}

/// Whether one server's tracking table can take [`TABLE_HEADROOM`] more keys. The limit is read
/// every time, since `CONFIG SET` may change it.
async fn table_has_room(node: &impl ClientLike) -> Result<bool, FredError> {
    let config_get = CustomCommand::new_static("CONFIG", ClusterHash::Random, false);
    let max_keys = node
        .custom::<Vec<String>, _>(config_get, vec!["GET", "tracking-table-max-keys"])
        .await
        .ok()
        .and_then(|pair| pair.get(1)?.parse::<u64>().ok())
        .unwrap_or(DEFAULT_TABLE_MAX_KEYS);
    if max_keys == 0 {
        return Ok(true);
    }
    let info = CustomCommand::new_static("INFO", ClusterHash::Random, false);
    let stats: String = node.custom(info, vec!["stats"]).await?;
    let tracked = stats
        .lines()
        .find_map(|line| line.strip_prefix("tracking_total_keys:"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or_else(interrupted)?;
    Ok(tracked + TABLE_HEADROOM <= max_keys)
}

async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, FredError>>,
) -> Result<T, FredError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(FredError::new(
                ErrorKind::Timeout,
                "tracking setup timed out",
            ))
        })
}

fn interrupted() -> FredError {
    FredError::new(ErrorKind::Canceled, "tracking interrupted")
}

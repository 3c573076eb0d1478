//! Keeps a [`NearCache`] coherent with Redis, through client tracking in redirect mode.
//!
//! Every connection that reads sessions (a "data" connection) runs
//! `CLIENT TRACKING ON REDIRECT <listener id> NOLOOP`: from then on, when anyone else changes a key
//! that connection read, Redis announces it on `__redis__:invalidate` to a listener connection of
//! ours on the same server. Redirect mode rather than RESP3 pushes, because fred 10.1 drops the push
//! by which Redis announces FLUSHALL, while it delivers the same announcement as a channel message
//! (an invalidation without keys). NOLOOP: our own saves do not invalidate our own entries; the
//! scripts read the key again after writing it, since a write ends its tracking.
//!
//! A supervisor task sets this up on every server the data clients talk to, renews the cache's lease
//! with a heartbeat that checks each connection still redirects to its listener, and starts over
//! (flushing the cache) on any reconnect, connection error, cluster change or failed heartbeat. It
//! says how its attempts go, so that the store's `ready()` can wait for the first one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::{
    ClientInterface, ClientLike, EventInterface, PubsubInterface, TrackingInterface,
};
use fred::prelude::{Builder, Config as FredConfig, Server, ServerConfig};
use fred::types::client::Invalidation;
use fred::types::{ClusterHash, CustomCommand, RespVersion};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::cache::{NearCache, LEASE};
use super::events::{Announcement, Inbox, Signal};

const CHANNEL: &str = "__redis__:invalidate";
/// Four heartbeats per lease: one lost reply does not stop the cache from serving.
const HEARTBEAT: Duration = Duration::from_millis(LEASE.as_millis() as u64 / 4);
/// Pause before setting up again after a failed attempt (Redis down, a failover under way).
const RETRY: Duration = Duration::from_millis(250);
/// Invalidations a listener may queue before the cache must flush: generous, since a burst of
/// writes by other instances must not cost every entry.
const LISTENER_CAPACITY: usize = 4096;
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
    /// `None` while under way; `Some(true)` once tracking is on (serving, or paused for want of
    /// room in the tracking table); `Some(false)` once it failed.
    done: Option<bool>,
    /// A failure was logged at `warn` and tracking has not been on since: the next failures are
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

/// Starts keeping `cache` coherent for the commands `clients` send. Needs a Tokio runtime.
pub(crate) fn supervise(cache: NearCache, clients: Vec<Client>, timeout: Duration) -> Supervisor {
    // Any event on a data connection flushes the cache at once, before a reply that follows it can
    // fill an entry (fred announces a reconnect before it replays queued commands).
    cache.watch(clients.iter().flat_map(events).collect());
    let (setup, setup_rx) = watch::channel(Setup::default());
    let retry = Arc::new(Notify::new());
    let retry_now = Arc::clone(&retry);
    let task = tokio::spawn(async move {
        let wake = Arc::new(Notify::new());
        // Dropped with this task, which ends them.
        let mut _wakers = JoinSet::new();
        for receiver in clients.iter().flat_map(events) {
            _wakers.spawn(wake_on(receiver, Arc::clone(&wake)));
        }
        loop {
            if let Err(error) = serve(&cache, &clients, timeout, &wake, &setup).await {
                if setup.borrow().warned {
                    tracing::debug!(%error, "near-cache tracking still down; starting over");
                } else {
                    tracing::warn!(
                        %error,
                        "near-cache tracking interrupted: no hits, reads go to Redis until it is on again"
                    );
                }
                setup.send_modify(|s| {
                    s.done = Some(false);
                    s.warned = true;
                });
                tokio::select! {
                    () = wake.notified() => {}
                    () = retry_now.notified() => {}
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
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

/// One epoch: listeners up, tracking on, then heartbeats until something breaks.
async fn serve(
    cache: &NearCache,
    clients: &[Client],
    timeout: Duration,
    wake: &Arc<Notify>,
    setup: &watch::Sender<Setup>,
) -> Result<(), FredError> {
    let listeners = bounded(timeout, listen(clients, timeout)).await?;
    let result = async {
        let epoch = cache.begin_epoch(
            listeners
                .values()
                .map(|listener| Box::new(listener.client.invalidation_rx()) as Box<dyn Inbox>)
                .collect(),
            listeners
                .values()
                .map(|listener| Signal::new(listener.client.error_rx()))
                .collect(),
        );
        let mut tasks = JoinSet::new();
        for listener in listeners.values() {
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
        // its own first connection). It needs no new one: `track` and the heartbeats look at the
        // connections as they are now, and a data connection's event since `begin_epoch` has
        // flushed the cache, so `confirm` refuses this epoch.
        let _ = std::pin::pin!(wake.notified()).enable();
        bounded(timeout, track(clients, &listeners)).await?;
        // Serving waits for a heartbeat that finds room in the tracking table; while there is none,
        // the cache is paused: empty, and filled again once there is.
        let mut paused = Some(epoch);
        loop {
            let sent = Instant::now();
            let room = bounded(timeout, heartbeat(clients, &listeners)).await?;
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
    for listener in listeners.values() {
        let _ = listener.client.quit().await;
    }
    result
}

/// A connection of ours subscribed to the invalidation channel on one server.
struct Listener {
    client: Client,
    id: i64,
}

/// One listener per server that the data clients are connected to.
async fn listen(
    clients: &[Client],
    timeout: Duration,
) -> Result<HashMap<Server, Listener>, FredError> {
    let mut listeners = HashMap::new();
    for client in clients {
        if client.active_connections().is_empty() {
            // Still connecting (a fresh store, a reconnect): a command waits for the connection,
            // which fred lists only once it is made (after announcing it).
            let _: () = client.ping(None).await?;
        }
        let servers = client.active_connections();
        if servers.is_empty() {
            return Err(FredError::new(ErrorKind::IO, "not connected yet"));
        }
        for server in servers {
            if let std::collections::hash_map::Entry::Vacant(slot) = listeners.entry(server) {
                let listener = connect_listener(client, slot.key(), timeout).await?;
                slot.insert(listener);
            }
        }
    }
    Ok(listeners)
}

async fn connect_listener(
    data: &Client,
    server: &Server,
    timeout: Duration,
) -> Result<Listener, FredError> {
    let mut config: FredConfig = data.client_config();
    config.server = ServerConfig::Centralized {
        server: server.clone(),
    };
    config.version = RespVersion::RESP2;
    config.fail_fast = true;
    // No reconnect policy: a listener that loses its connection is replaced, with a flush.
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
    let id: i64 = client.client_id().await?;
    client.subscribe(CHANNEL).await?;
    Ok(Listener { client, id })
}

/// Turns tracking on for every data connection, redirected to the listener on its server.
async fn track(clients: &[Client], listeners: &HashMap<Server, Listener>) -> Result<(), FredError> {
    for client in clients {
        for server in client.active_connections() {
            let listener = listeners.get(&server).ok_or_else(interrupted)?;
            let _: () = client
                .with_cluster_node(server)
                .client_tracking("ON", Some(listener.id), None, false, false, false, true)
                .await?;
        }
    }
    Ok(())
}

/// Proves every listener alive and every data connection still redirecting to its listener: the
/// replies come after every invalidation Redis sent before it answered. Says whether every
/// server's tracking table has room.
async fn heartbeat(
    clients: &[Client],
    listeners: &HashMap<Server, Listener>,
) -> Result<bool, FredError> {
    for listener in listeners.values() {
        let _: () = listener.client.ping(None).await?;
    }
    let mut room = true;
    for client in clients {
        for server in client.active_connections() {
            let listener = listeners.get(&server).ok_or_else(interrupted)?;
            let node = client.with_cluster_node(server);
            let redirect: i64 = node.client_getredir().await?;
            if redirect != listener.id {
                return Err(interrupted());
            }
            room &= table_has_room(&node).await?;
        }
    }
    Ok(room)
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

//! Keeps every script loaded on every server the store talks to, so that a write is one `EVALSHA`
//! from the first request on. A server forgets scripts when it restarts or is replaced (a failover
//! promotes a replica, which never received them; a slot moves to a new master) and on `SCRIPT
//! FLUSH`. The store's connections announce each (re)connection and cluster change, and a
//! `NOSCRIPT` reply tells of the rest: each starts a load of all the scripts, and a write waits for
//! a load under way rather than pay for a second round trip.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use fred::clients::Client;
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::EventInterface;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::scripts;

/// Pause before loading again after a failed attempt (the server down, a failover under way).
const RETRY: Duration = Duration::from_millis(250);
/// The most one attempt may take: the time fred gives its own connection set-up commands.
const ATTEMPT: Duration = Duration::from_secs(2);

/// The loads the store's servers need, and the task that makes them.
#[derive(Debug, Default)]
pub(super) struct Loader {
    /// Bumped by each event after which a server may lack the scripts.
    wanted: AtomicU64,
    /// A load is wanted and not yet done: writes wait for the attempt under way. Cleared by a
    /// failed attempt too, so that a server that refuses `SCRIPT LOAD` costs writes nothing more
    /// than their `EVAL` fallback.
    loading: AtomicBool,
    /// Shared with the task, which must not keep the loader alive while it waits.
    wanted_changed: Arc<Notify>,
    attempted: Notify,
    task: OnceLock<tokio::task::AbortHandle>,
}

impl Drop for Loader {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

impl Loader {
    /// Starts loading, once per store: now (the clients may be connected already), and again after
    /// every event of theirs that may have cost a server its scripts. Needs a Tokio runtime.
    pub(super) fn start(self: &Arc<Self>, clients: impl FnOnce() -> Vec<Client>) {
        self.task.get_or_init(|| {
            self.want();
            let task = keep_loaded(
                Arc::downgrade(self),
                Arc::clone(&self.wanted_changed),
                clients(),
            );
            tokio::spawn(task).abort_handle()
        });
    }

    /// Asks for a load of every script: a server may have lost them.
    pub(super) fn want(&self) {
        self.loading.store(true, Ordering::SeqCst);
        self.wanted.fetch_add(1, Ordering::SeqCst);
        self.wanted_changed.notify_one();
    }

    /// Returns once no load is under way; at once when none is. The caller bounds the wait.
    pub(super) async fn settled(&self) {
        loop {
            let attempted = self.attempted.notified();
            if !self.loading.load(Ordering::SeqCst) {
                return;
            }
            attempted.await;
        }
    }
}

async fn keep_loaded(loader: Weak<Loader>, wanted_changed: Arc<Notify>, clients: Vec<Client>) {
    let mut events = JoinSet::new();
    for client in &clients {
        events.spawn(want_on(client.reconnect_rx(), loader.clone()));
        events.spawn(want_on(client.cluster_change_rx(), loader.clone()));
    }
    let mut covered = 0;
    loop {
        let Some(this) = loader.upgrade() else { return };
        let target = this.wanted.load(Ordering::SeqCst);
        if covered >= target {
            drop(this);
            wanted_changed.notified().await;
            continue;
        }
        let loaded = tokio::time::timeout(ATTEMPT, load_all(&clients[0]))
            .await
            .unwrap_or_else(|_| Err(FredError::new(ErrorKind::Timeout, "timed out")));
        let succeeded = loaded.is_ok();
        if succeeded {
            covered = target;
        }
        if !succeeded || this.wanted.load(Ordering::SeqCst) == target {
            this.loading.store(false, Ordering::SeqCst);
        }
        this.attempted.notify_waiters();
        if let Err(error) = loaded {
            tracing::debug!(%error, "loading the session scripts failed; retrying");
            drop(this);
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Wants a load on every event of one channel, for as long as the store lives.
async fn want_on<T: Clone>(mut events: Receiver<T>, loader: Weak<Loader>) {
    loop {
        match events.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => match loader.upgrade() {
                Some(loader) => loader.want(),
                None => return,
            },
            Err(RecvError::Closed) => return,
        }
    }
}

/// Every script onto every server `client` talks to (on a cluster, every master).
async fn load_all(client: &Client) -> Result<(), FredError> {
    for script in scripts::all() {
        script.load(client).await?;
    }
    Ok(())
}

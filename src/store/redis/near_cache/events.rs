//! What the near-cache hears from Redis, in its own terms: announcements of changed keys from the
//! listening connections ([`Inbox`]), and events after which nothing cached can be trusted
//! ([`Signal`]). `tracking.rs` turns fred's channels into these, so the cache itself knows no Redis
//! client.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;

/// What a listening connection announced.
#[derive(Debug)]
pub(crate) enum Notice {
    /// These keys changed.
    Changed(Vec<String>),
    /// Any key may have changed (a `FLUSHALL`, or announcements lost): tracking goes on.
    Cleared,
    /// The listener is gone: nothing can be trusted until a new epoch begins.
    Closed,
}

/// A listening connection's announcements, as they arrive.
pub(crate) trait Inbox: Send {
    /// The next announcement not yet taken, if any.
    fn next(&mut self) -> Option<Notice>;
}

/// One announcement on a listener's channel: the keys it names (none: every key, as Redis announces
/// a `FLUSHALL`).
pub(crate) trait Announcement: Clone + Send + 'static {
    fn into_keys(self) -> Vec<String>;
}

impl<T: Announcement> Inbox for Receiver<T> {
    fn next(&mut self) -> Option<Notice> {
        match self.try_recv() {
            Ok(announced) => {
                let keys = announced.into_keys();
                Some(match keys.is_empty() {
                    // Its connections stay tracked, and what they read from now on is tracked anew.
                    true => Notice::Cleared,
                    false => Notice::Changed(keys),
                })
            }
            // Messages were lost: no entry can be trusted, though tracking goes on.
            Err(TryRecvError::Lagged(_)) => Some(Notice::Cleared),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Closed) => Some(Notice::Closed),
        }
    }
}

/// One of the client's event channels (reconnects, errors, cluster changes): that an event happened is all
/// the cache needs to know.
pub(crate) struct Signal(Box<dyn Source>);

trait Source: Send {
    /// Whether any event arrived (or the channel closed) since the last call.
    fn fired(&mut self) -> bool;
    /// Waits for the next event; `false` once the channel is closed.
    fn next(&mut self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
}

impl<T: Clone + Send + 'static> Source for Receiver<T> {
    fn fired(&mut self) -> bool {
        let mut fired = false;
        loop {
            match self.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => fired = true,
                Err(TryRecvError::Empty) => return fired,
                Err(TryRecvError::Closed) => return true,
            }
        }
    }

    fn next(&mut self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move { !matches!(self.recv().await, Err(RecvError::Closed)) })
    }
}

impl Signal {
    pub(crate) fn new<T: Clone + Send + 'static>(receiver: Receiver<T>) -> Self {
        Self(Box::new(receiver))
    }

    /// Whether any event arrived (or the channel closed) since the last call.
    pub(crate) fn fired(&mut self) -> bool {
        self.0.fired()
    }

    /// Waits for the next event; `false` once the channel is closed.
    pub(crate) async fn next(&mut self) -> bool {
        self.0.next().await
    }
}

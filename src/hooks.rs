//! Lifecycle hooks, for audit logs: the application's callback hears of each session created,
//! logged in, cycled, destroyed or revoked, once the store has done it. The callback runs on a
//! thread of its own, fed through a bounded queue: a request never waits for it, and a callback
//! that is slow, blocks or panics cannot hold up or break one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, SyncSender};

use crate::metrics::{Event, Metrics};

/// Events that may wait for the hook; beyond them, an event is dropped (and counted) rather than
/// make a request wait.
const QUEUE: usize = 1024;

/// What happened to a session, as [`SessionLayer::with_hook`](crate::SessionLayer::with_hook)'s
/// callback hears it: only once the store has done it, and once per thing done.
///
/// It names the session by the first 8 hex digits of its key id, the `key` of the logs, never by
/// its token or its whole key id: an audit log of these events lets nobody take over a session.
///
/// # Examples
///
/// ```
/// use axum_redis_session::{MemoryStore, SessionEvent, SessionEventKind, SessionLayer};
///
/// let layer = SessionLayer::new(MemoryStore::default()).with_hook(|event: &SessionEvent| {
///     if event.kind == SessionEventKind::Login {
///         println!("{} signed in (session {})", event.user.as_deref().unwrap_or("?"), event.key);
///     }
/// });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionEvent {
    /// What happened.
    pub kind: SessionEventKind,
    /// The session's key id prefix (8 hex digits): for a login or a cycle, the new id's; for
    /// [`DestroyEverywhere`](SessionEventKind::DestroyEverywhere) and
    /// [`RevokeOthers`](SessionEventKind::RevokeOthers), the asking session's.
    pub key: String,
    /// The prefix of the id the session had before, when it moved to a new one (a cycle, or a
    /// login of a session that already existed), so that an audit trail can follow it.
    pub previous: Option<String>,
    /// The user the session is bound to, when known: always for a login, a destroy (when the
    /// session had a user), a logout-everywhere and a revoke; never for
    /// [`Created`](SessionEventKind::Created) (a new session has none); for a
    /// [`Cycle`](SessionEventKind::Cycle), the user the request read (`None` when it never read
    /// its session).
    pub user: Option<String>,
}

/// The kinds of [`SessionEvent`]. A login is one [`Login`](Self::Login), never also a
/// [`Created`](Self::Created) or a [`Cycle`](Self::Cycle), though it writes a session under a
/// fresh id.
///
/// # Examples
///
/// ```
/// use axum_redis_session::SessionEventKind;
///
/// fn is_sign_out(kind: SessionEventKind) -> bool {
///     matches!(kind, SessionEventKind::Destroy | SessionEventKind::DestroyEverywhere)
/// }
/// # assert!(is_sign_out(SessionEventKind::Destroy));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEventKind {
    /// A new session was written (the first change of a visitor without one).
    Created,
    /// A session was bound to a user ([`Session::login`](crate::Session::login),
    /// [`login_fresh`](crate::Session::login_fresh)), under a fresh id.
    Login,
    /// A session moved to a fresh id without a login ([`Session::cycle_id`](crate::Session::cycle_id)).
    Cycle,
    /// A session was deleted: a logout ([`Session::destroy`](crate::Session::destroy)), or the
    /// asking session ending itself by its own device handle. Only when a session was there.
    Destroy,
    /// Every session of the user was deleted
    /// ([`Session::destroy_everywhere`](crate::Session::destroy_everywhere)): one event per call,
    /// naming the asking session.
    DestroyEverywhere,
    /// Another session of the user was ended by its device handle
    /// ([`Session::end_device`](crate::Session::end_device)): one event per session ended,
    /// naming it.
    Revoke,
    /// Every other session of the user was ended
    /// ([`Session::end_other_devices`](crate::Session::end_other_devices)): one event per call,
    /// naming the asking session, which stays. Not one per session: on a cluster they are ended
    /// through the user's revocation epoch, which also ends logins racing the call, so which
    /// sessions ended is not known.
    RevokeOthers,
}

impl SessionEvent {
    pub(crate) fn new(
        kind: SessionEventKind,
        key: &str,
        previous: Option<&str>,
        user: Option<&str>,
    ) -> Self {
        Self {
            kind,
            key: key.to_owned(),
            previous: previous.map(str::to_owned),
            user: user.map(str::to_owned),
        }
    }
}

/// The sending end of the hook's queue; its clones share the one thread, which ends once the last
/// of them is dropped (after delivering what was queued).
#[derive(Clone)]
pub(crate) struct Hooks {
    queue: SyncSender<SessionEvent>,
}

impl Hooks {
    /// Starts the thread that calls `hook`. A thread rather than a Tokio task: the layer needs no
    /// runtime to be built, and a hook that blocks (a file write, a synchronous client) stalls only
    /// its own thread, never the runtime's workers.
    pub(crate) fn start(hook: impl FnMut(&SessionEvent) + Send + 'static) -> Self {
        Self::with_queue(hook, QUEUE)
    }

    fn with_queue(mut hook: impl FnMut(&SessionEvent) + Send + 'static, bound: usize) -> Self {
        let (queue, events) = sync_channel::<SessionEvent>(bound);
        let calls = move || {
            for event in events {
                // A panic ends this call only: the next event gets the hook again.
                if catch_unwind(AssertUnwindSafe(|| hook(&event))).is_err() {
                    let key = event.key.as_str();
                    tracing::error!(kind = ?event.kind, key, "session hook panicked");
                }
            }
        };
        // Without the thread, its receiver is gone and every event is counted as dropped.
        if let Err(error) = std::thread::Builder::new()
            .name("session-hooks".to_owned())
            .spawn(calls)
        {
            tracing::error!(%error, "session hook thread not started; its events are dropped");
        }
        Self { queue }
    }

    /// Queues `event` for the hook without waiting; when the queue is full, it is dropped and
    /// counted instead.
    pub(crate) fn send(&self, event: SessionEvent, metrics: &Metrics) {
        if self.queue.try_send(event).is_err() {
            metrics.record(Event::HookEventDropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use super::*;

    fn event(key: &str) -> SessionEvent {
        SessionEvent::new(SessionEventKind::Created, key, None, None)
    }

    #[test]
    fn a_full_queue_drops_and_counts_the_event_and_never_waits() {
        // The hook tells of each event, then waits to be let go.
        let (sender, received) = channel();
        let release = Arc::new(Barrier::new(2));
        let held = Arc::clone(&release);
        let hooks = Hooks::with_queue(
            move |event: &SessionEvent| {
                sender.send(event.key.clone()).unwrap();
                held.wait();
            },
            1,
        );
        let metrics = Metrics::default();
        hooks.send(event("held0000"), &metrics);
        assert_eq!(received.recv().unwrap(), "held0000", "the hook holds it");
        hooks.send(event("queued00"), &metrics); // the one place in the queue
        hooks.send(event("dropped0"), &metrics); // no room: returns at once
        assert_eq!(metrics.snapshot().hook_events_dropped, 1);
        assert!(metrics
            .to_prometheus()
            .contains("\nsession_hook_events_dropped_total 1\n"));
        release.wait();
        assert_eq!(received.recv().unwrap(), "queued00");
        release.wait();
        assert!(received.recv_timeout(Duration::from_millis(100)).is_err());
    }

    #[test]
    fn a_panicking_hook_gets_the_next_event() {
        let (sender, received) = channel();
        let hooks = Hooks::start(move |event: &SessionEvent| {
            assert_ne!(event.key, "panics00", "a hook that panics");
            sender.send(event.key.clone()).unwrap();
        });
        let metrics = Metrics::default();
        hooks.send(event("panics00"), &metrics);
        hooks.send(event("next0000"), &metrics);
        let next = received.recv_timeout(Duration::from_secs(5));
        assert_eq!(next.as_deref(), Ok("next0000"));
        assert_eq!(metrics.snapshot().hook_events_dropped, 0);
    }
}

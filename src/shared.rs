//! What every service built by one [`SessionLayer`](crate::SessionLayer) shares: the store, the
//! settings, the error hook, the lifecycle hook and the counters. Below the layer, the service and the session handle,
//! so each of them can hold it without importing the others.

use std::sync::Arc;

use crate::config::Config;
use crate::error::ErrorHandler;
use crate::hooks::{Hooks, SessionEvent};
use crate::metrics::Metrics;
use crate::store::Backend;

#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) store: Backend,
    pub(crate) config: Arc<Config>,
    pub(crate) error_handler: Option<ErrorHandler>,
    pub(crate) metrics: Metrics,
    /// The lifecycle hook's queue; `None` (the default) costs requests nothing.
    pub(crate) hooks: Option<Hooks>,
}

impl Shared {
    /// Tells the hook, if one is set, of what the store has just done; `event` is built only then.
    pub(crate) fn notify(&self, event: impl FnOnce() -> SessionEvent) {
        if let Some(hooks) = &self.hooks {
            hooks.send(event(), &self.metrics);
        }
    }
}

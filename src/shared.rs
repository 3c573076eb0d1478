//! What every service built by one [`SessionLayer`](crate::SessionLayer) shares: the store, the
//! settings, the error hook and the counters. Below the layer, the service and the session handle,
//! so each of them can hold it without importing the others.

use std::sync::Arc;

use crate::config::Config;
use crate::error::ErrorHandler;
use crate::metrics::Metrics;
use crate::store::Backend;

#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) store: Backend,
    pub(crate) config: Arc<Config>,
    pub(crate) error_handler: Option<ErrorHandler>,
    pub(crate) metrics: Metrics,
}

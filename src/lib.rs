//! [guarantees]: crate::guarantees
//! [layout]: crate::layout
//! [scaling]: crate::scaling
//! [near-cache]: crate::near_cache
//! [observability]: crate::observability
//! [security]: crate::security
//! [migrating]: crate::migrating
//! [demo]: crate::demo
// The reference links above come before the README on purpose: where a label is defined twice,
// the first definition wins, so rustdoc links the guides to their modules while GitHub, which
// reads the README alone, follows the README's own definitions to the files in docs/.
#![doc = include_str!("../README.md")]
//!
//! ## Inside the crate
//!
//! Where a request is loaded: [`Session`]'s first read (`src/session/state.rs`). Where the delta
//! is written: `commit` (`src/session/commit.rs`), after the handler returns, through the store
//! (`src/store/`, the only place that talks to Redis: `src/store/redis/`). Where the cookie is
//! found and set: `src/cookie.rs`. Modules depend downhill: layer → service → cookie,
//! session::commit → session → store → metrics, config, id, error.

mod config;
mod cookie;
mod csrf;
mod devices;
mod error;
mod extract;
mod hooks;
mod id;
mod layer;
mod metrics;
mod migrate;
mod service;
mod session;
mod shared;
mod store;
mod typed;

pub use ::cookie::SameSite;
pub use csrf::{CsrfVerified, CSRF_HEADER};
pub use devices::{ClientIp, Device};
pub use error::{CorruptValue, Error};
pub use extract::MissingSession;
pub use fred;
pub use hooks::{SessionEvent, SessionEventKind};
pub use layer::SessionLayer;
pub use metrics::{HistogramSnapshot, Metrics, MetricsSnapshot, NearCacheSnapshot, StoreLatency};
#[cfg(feature = "tower-sessions")]
pub use migrate::TowerSessionsMigration;
pub use service::{ResponseFuture, SessionService};
pub use session::{Session, SessionLock};
pub use store::{Backend, ForeignStore, Format, MemoryStore, RedisStore};
pub use time;
pub use typed::TypedSession;

// The guides in docs/, one page each on docs.rs, their Rust blocks compiled as doctests. Each
// first defines the guides' reference links for rustdoc (see the crate docs' first lines).
macro_rules! guide_links {
    () => {
        "[guarantees]: crate::guarantees\n\
         [layout]: crate::layout\n\
         [scaling]: crate::scaling\n\
         [near-cache]: crate::near_cache\n\
         [observability]: crate::observability\n\
         [security]: crate::security\n\
         [migrating]: crate::migrating\n\
         [demo]: crate::demo\n"
    };
}

#[doc = guide_links!()]
#[doc = include_str!("../docs/guarantees.md")]
pub mod guarantees {}

#[doc = guide_links!()]
#[doc = include_str!("../docs/layout.md")]
pub mod layout {}

#[doc = guide_links!()]
#[doc = include_str!("../docs/scaling.md")]
pub mod scaling {}

#[doc = guide_links!()]
#[doc = include_str!("../docs/near-cache.md")]
pub mod near_cache {}

#[doc = guide_links!()]
#[doc = include_str!("../docs/observability.md")]
pub mod observability {}

#[doc = guide_links!()]
#[doc = include_str!("../docs/security.md")]
pub mod security {}

#[doc = guide_links!()]
#[doc = include_str!("../docs/migrating.md")]
pub mod migrating {}

#[doc = guide_links!()]
#[doc = include_str!("../docs/demo.md")]
pub mod demo {}

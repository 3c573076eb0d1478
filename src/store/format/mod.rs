//! Foreign session formats (issue #20): how another framework's app stores a session in Redis and
//! names it in its cookie, so that one login is shared with it. Each file holds one framework's
//! codecs; the store that uses them comes next.
// The codecs land before the store that wires them in (#20's steps).
#![allow(dead_code)]

pub(crate) mod express;
#[cfg(feature = "laravel")]
pub(crate) mod laravel;
pub(crate) mod php;
#[cfg(feature = "tower-sessions")]
pub(crate) mod tower_sessions;

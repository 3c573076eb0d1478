//! The crate's one error type and the responses it turns into.

use std::sync::Arc;

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;

/// Everything that can go wrong with a session.
///
/// Handlers can return it with `?`: its response has the status of the failure and a short body that
/// carries no internals. [`SessionLayer::with_error_handler`](crate::SessionLayer::with_error_handler)
/// reshapes these responses, including those the layer itself produces when a save fails.
///
/// # Examples
///
/// ```
/// use axum::response::IntoResponse;
/// use axum_redis_session::Error;
///
/// let response = Error::TooLarge { limit: 1024 }.into_response();
/// assert_eq!(response.status(), 413);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not be reached in time or refused the command. Responds 503.
    #[error("session store failed")]
    Store(#[source] fred::error::Error),
    /// A stored value is not valid JSON for the type it was read as. Responds 500.
    #[error("session value under `{key}` does not deserialize")]
    Corrupt {
        /// The session key whose value failed to deserialize.
        key: String,
        /// What was wrong with it, without the value.
        #[source]
        source: CorruptValue,
    },
    /// A value could not be serialized to JSON. Responds 500.
    #[error("session value under `{key}` does not serialize")]
    Serialize {
        /// The session key being written.
        key: String,
        /// What serde_json reported.
        #[source]
        source: serde_json::Error,
    },
    /// The key starts with `$`, which the crate reserves for its own metadata. Responds 500.
    #[error("session key `{0}` is reserved: keys starting with `$` belong to the session layer")]
    ReservedKey(String),
    /// The change would grow the session past the configured size limit; nothing of it was saved.
    /// Responds 413.
    #[error("session would exceed its size limit of {limit} bytes")]
    TooLarge {
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// The session was destroyed or expired while this request was using it, so its changes were
    /// not saved (saving them would bring it back). Responds 409.
    #[error("session ended while the request was using it")]
    Ended,
    /// [`Session::lock`](crate::Session::lock) waited for as long as the layer's
    /// [`with_lock_wait`](crate::SessionLayer::with_lock_wait) while another request held the
    /// session's lock. Responds 409.
    #[error("session is locked by another request")]
    LockBusy,
    /// This request held the session's lock, but lost it before its changes were saved: the lock
    /// expired (its renewal could not reach the store) and another request has taken it since.
    /// Nothing was saved, so the other holder's work stands. Responds 409.
    #[error("session lock lost before the save")]
    LockLost,
    /// [`Session::login`](crate::Session::login) was given an empty user id; nothing was recorded.
    /// Responds 400.
    #[error("the user id given to login is empty")]
    EmptyUser,
    /// The request's CSRF token is missing or is not its session's. Responds 403.
    #[error("CSRF token missing or wrong")]
    Csrf,
    /// The store's format cannot do this: a session lock, the device list or logging out
    /// everywhere need the crate's own layout, and a foreign session holding a PHP reference is
    /// never rewritten. Nothing was done. Responds 501.
    #[error("not supported by the session format: {what}")]
    Unsupported {
        /// What was asked.
        what: &'static str,
    },
    /// A layer setting is invalid; the layer refuses to build.
    #[error("invalid session setting `{option}`: {reason}")]
    Config {
        /// The builder option at fault.
        option: &'static str,
        /// Why it is rejected.
        reason: &'static str,
    },
}

impl Error {
    /// The HTTP status this error answers with.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(axum_redis_session::Error::Ended.status(), 409);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Ended | Self::LockBusy | Self::LockLost => StatusCode::CONFLICT,
            Self::Csrf => StatusCode::FORBIDDEN,
            Self::EmptyUser => StatusCode::BAD_REQUEST,
            Self::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
            Self::Corrupt { .. }
            | Self::Serialize { .. }
            | Self::ReservedKey(_)
            | Self::Config { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The default response: status and a fixed phrase, nothing from the error's internals.
    pub(crate) fn default_response(&self) -> Response {
        let body = match self {
            Self::Store(_) => "session store unavailable",
            Self::TooLarge { .. } => "session too large",
            Self::Ended => "session ended",
            Self::LockBusy => "session busy",
            Self::LockLost => "session lock lost",
            Self::Csrf => "CSRF token missing or wrong",
            Self::EmptyUser => "empty user id",
            Self::Unsupported { .. } => "not supported by the session format",
            _ => "internal error",
        };
        (self.status(), body).into_response()
    }
}

/// Why a stored value did not decode, and where in its text, but never the value itself: session
/// data must not reach logs through an error chain (`{:#}`), and serde_json's own messages quote it.
///
/// # Examples
///
/// ```
/// # async fn handler(session: axum_redis_session::Session) {
/// if let Err(axum_redis_session::Error::Corrupt { key, source }) = session.get::<u64>("count").await {
///     // e.g. "count: JSON of another type at line 1, column 8"
///     tracing::warn!("{key}: {source}");
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptValue {
    what: &'static str,
    /// 1-based position in the stored text; 0 when the text as a whole is at fault.
    line: usize,
    column: usize,
}

impl CorruptValue {
    /// An integer field that an increment cannot add to (not an integer, or it would overflow).
    pub(crate) fn not_an_integer() -> Self {
        Self {
            what: "not an integer an increment can add to",
            line: 0,
            column: 0,
        }
    }
}

impl From<serde_json::Error> for CorruptValue {
    fn from(error: serde_json::Error) -> Self {
        use serde_json::error::Category;
        let what = match error.classify() {
            Category::Syntax => "not valid JSON",
            Category::Data => "JSON of another type",
            Category::Eof => "JSON cut short",
            Category::Io => "unreadable",
        };
        Self {
            what,
            line: error.line(),
            column: error.column(),
        }
    }
}

impl std::fmt::Display for CorruptValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            f.write_str(self.what)
        } else {
            write!(
                f,
                "{} at line {}, column {}",
                self.what, self.line, self.column
            )
        }
    }
}

impl std::error::Error for CorruptValue {}

/// Marks a response as produced from an [`Error`], so the layer can hand it to the user's hook.
#[derive(Clone, Debug)]
pub(crate) struct ErrorResponse(pub(crate) Arc<Error>);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut response = self.default_response();
        response
            .extensions_mut()
            .insert(ErrorResponse(Arc::new(self)));
        response
    }
}

/// Shapes the response for a session error; see [`SessionLayer::with_error_handler`](crate::SessionLayer::with_error_handler).
pub(crate) type ErrorHandler = Arc<dyn Fn(&Error) -> Response + Send + Sync>;

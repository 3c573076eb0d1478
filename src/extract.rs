//! The axum extractor for [`Session`] and its rejection.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::session::Session;

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionMissing;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(SessionMissing)
    }
}

/// `Option<Session>` is `None` on routes outside the layer, instead of a rejection.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Session>().cloned())
    }
}

/// Rejection of the [`Session`] extractor on a route that [`SessionLayer`](crate::SessionLayer)
/// does not wrap. It answers 500, since the fault is in the router, not the request.
///
/// # Examples
///
/// ```
/// use axum::response::IntoResponse;
///
/// let response = axum_redis_session::SessionMissing.into_response();
/// assert_eq!(response.status(), 500);
/// ```
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the Session extractor found no session: is `SessionLayer` added to the router, around this route?")]
pub struct SessionMissing;

impl IntoResponse for SessionMissing {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

//! The axum extractor for [`Session`] and its rejection.

use std::convert::Infallible;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::session::Session;

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSession;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(MissingSession)
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
/// let response = axum_redis_session::MissingSession.into_response();
/// assert_eq!(response.status(), 500);
/// ```
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the Session extractor found no session: is `SessionLayer` added to the router, around this route?")]
pub struct MissingSession;

impl IntoResponse for MissingSession {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use axum::Router;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::{MemoryStore, SessionLayer};

    async fn get_body(app: Router) -> (StatusCode, String) {
        let response = app
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn session_without_the_layer_is_a_rejection_that_says_how_to_fix_it() {
        let app = Router::new().route("/", get(|_: Session| async { "unreachable" }));
        let (status, body) = get_body(app).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            body.contains("is `SessionLayer` added to the router"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn optional_session_is_none_without_the_layer_and_some_with_it() {
        let handler = |session: Option<Session>| async move { session.is_some().to_string() };
        let bare = Router::new().route("/", get(handler));
        assert_eq!(get_body(bare).await.1, "false");
        let layered = Router::new()
            .route("/", get(handler))
            .layer(SessionLayer::new(MemoryStore::default()));
        assert_eq!(get_body(layered).await.1, "true");
    }
}

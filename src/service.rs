//! The tower service: reads the cookie on the way in, saves the delta and sets the cookie on the way
//! out, before the response leaves.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use axum_core::response::{IntoResponse, Response};
use axum_core::BoxError;
use bytes::Bytes;
use http::Request;
use tower_service::Service;
use tracing::Instrument;

use crate::cookie::SessionCookie;
use crate::devices::Client;
use crate::error::ErrorResponse;
use crate::metrics::{ErrorKind, Event};
use crate::migrate::Legacy;
use crate::session::{commit, Session};
use crate::shared::Shared;

/// The middleware [`SessionLayer`](crate::SessionLayer) wraps around a service.
///
/// # Examples
///
/// ```
/// use axum_redis_session::{MemoryStore, SessionLayer};
/// use tower::Layer;
///
/// let service = SessionLayer::new(MemoryStore::default()).layer(tower::service_fn(|_req: axum::http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(axum::http::Response::new(axum::body::Body::empty()))
/// }));
/// ```
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService").finish_non_exhaustive()
    }
}

impl<S> SessionService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped service.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum_redis_session::{MemoryStore, SessionLayer};
    /// use tower::Layer;
    ///
    /// let service = SessionLayer::new(MemoryStore::default()).layer(tower::service_fn(|_req: axum::http::Request<axum::body::Body>| async {
    ///     Ok::<_, std::convert::Infallible>(axum::http::Response::new(axum::body::Body::empty()))
    /// }));
    /// let _inner = service.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum_redis_session::{MemoryStore, SessionLayer};
    /// use tower::Layer;
    ///
    /// let mut service = SessionLayer::new(MemoryStore::default()).layer(0_u32);
    /// *service.get_mut() += 1;
    /// assert_eq!(*service.get_ref(), 1);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service, dropping the session middleware.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum_redis_session::{MemoryStore, SessionLayer};
    /// use tower::Layer;
    ///
    /// let service = SessionLayer::new(MemoryStore::default()).layer("inner");
    /// assert_eq!(service.into_inner(), "inner");
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The future of [`SessionService`]: the inner call, then the save.
///
/// # Examples
///
/// ```
/// use axum_redis_session::{MemoryStore, ResponseFuture, SessionLayer};
/// use tower::{Layer, Service};
///
/// # async fn run() {
/// let mut service = SessionLayer::new(MemoryStore::default()).layer(tower::service_fn(|_req: axum::http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(axum::http::Response::new(axum::body::Body::empty()))
/// }));
/// let future: ResponseFuture<std::convert::Infallible> = service.call(axum::http::Request::new(axum::body::Body::empty()));
/// assert_eq!(future.await.unwrap().status(), 200);
/// # }
/// ```
pub struct ResponseFuture<E> {
    inner: Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>,
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response, E>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<E> fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let cookie = SessionCookie::find(request.headers(), &shared.config.cookie_name);
        if cookie == SessionCookie::Ambiguous {
            // Browsers send two when cookies with different paths or domains share the name: common
            // enough that a warning per request would drown the logs.
            shared.metrics.record(Event::DuplicateCookie);
            tracing::debug!("request carries more than one session cookie; treated as none");
        }
        // `key` is filled in once the request needs its key id: hashing it costs nothing until then.
        let span = tracing::debug_span!("session", key = tracing::field::Empty);
        let client = Client::of(&request, shared.config.client_ip.as_ref());
        let session = Session::new(
            Arc::clone(&shared),
            cookie.value(),
            cookie != SessionCookie::Absent,
            client,
            span.clone(),
        );
        request.extensions_mut().insert(session.clone());
        // A browser still carrying tower-sessions' cookie, when the layer migrates from it.
        let take_over = crate::migrate::take_over(&shared, &request, &session);

        // The service that was polled ready must be the one called; keep a fresh clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let inner = Box::pin(
            async move {
                let legacy = match take_over {
                    Some(take_over) => match take_over.await {
                        Ok(legacy) => Some(legacy),
                        // The old session could not be read: the handler does not run without it.
                        Err(error) => {
                            return Ok(finish(error.into_response(), &session, &shared, None).await)
                        }
                    },
                    None => None,
                };
                let response = inner.call(request).await?;
                Ok(finish(response.map(Body::new), &session, &shared, legacy).await)
            }
            .instrument(span),
        );
        ResponseFuture { inner }
    }
}

/// Saves the session unless the handler failed, and turns a failed save into an error response:
/// the client is never told that something succeeded when its session change was not stored.
/// A tower-sessions record the request took over (`legacy`) is deleted once its data is stored in
/// our layout; until then the browser keeps its old cookie, and a later request takes it over again.
async fn finish(
    mut response: Response,
    session: &Session,
    shared: &Shared,
    legacy: Option<Legacy>,
) -> Response {
    // A failed handler's changes are dropped (by default); a logout it recorded is still carried out.
    let save_changes = !response.status().is_server_error() || shared.config.save_on_server_error;
    let mut stored = save_changes;
    let mut cookie = match commit(session.end(), shared, save_changes).await {
        Ok(update) => update,
        Err(error) => {
            response = error.into_response();
            stored = false;
            None
        }
    };
    // The old record, deleted: its cookie is then removed, after any error handler has run.
    let forgotten = match legacy.filter(|_| stored) {
        Some(legacy) => match legacy.forget(&shared.store).await {
            Ok(()) => Some(legacy),
            Err(error) => {
                // Our copy would live beside the old one, which the old cookie still opens.
                response = error.into_response();
                cookie = None;
                None
            }
        },
        None => None,
    };
    // After the save, so that the next holder of the session's lock reads what this request wrote.
    session.release_lock().await;
    // Session errors, whether a handler returned them or the save above failed.
    if let Some(ErrorResponse(error)) = response.extensions().get::<ErrorResponse>().cloned() {
        let kind = ErrorKind::of(&error);
        shared.metrics.record(Event::Failed(kind));
        if let ErrorKind::Store = kind {
            tracing::error!(key = session.id_prefix(), %error, "session store failed");
        } else {
            tracing::debug!(key = session.id_prefix(), %error, "session request refused");
        }
        if let Some(handler) = &shared.error_handler {
            response = handler(&error);
        }
    }
    if let Some(update) = cookie {
        update.write(&shared.config, response.headers_mut());
    }
    if let Some(legacy) = forgotten {
        legacy.expire_cookie(response.headers_mut());
    }
    response
}

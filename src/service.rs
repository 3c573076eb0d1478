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
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request};
use tower_service::Service;
use tracing::Instrument;

use crate::commit::{commit, CookieUpdate};
use crate::error::ErrorResponse;
use crate::metrics::{ErrorKind, Event};
use crate::session::Session;
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
        let session = Session::new(
            Arc::clone(&shared),
            cookie.value(),
            cookie != SessionCookie::Absent,
            span.clone(),
        );
        request.extensions_mut().insert(session.clone());

        // The service that was polled ready must be the one called; keep a fresh clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let inner = Box::pin(
            async move {
                let response = inner.call(request).await?;
                Ok(finish(response.map(Body::new), &session, &shared).await)
            }
            .instrument(span),
        );
        ResponseFuture { inner }
    }
}

/// Saves the session unless the handler failed, and turns a failed save into an error response:
/// the client is never told that something succeeded when its session change was not stored.
async fn finish(mut response: Response, session: &Session, shared: &Shared) -> Response {
    // A failed handler's changes are dropped (by default); a logout it recorded is still carried out.
    let save_changes = !response.status().is_server_error() || shared.config.save_on_server_error;
    let mut cookie = None;
    match commit(session, save_changes).await {
        Ok(update) => cookie = update,
        Err(error) => response = error.into_response(),
    }
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
        let cookie = match update {
            CookieUpdate::Set(cookie) | CookieUpdate::Remove(cookie) => cookie,
        };
        if let Ok(value) = HeaderValue::try_from(cookie.encoded().to_string()) {
            let headers = response.headers_mut();
            headers.append(SET_COOKIE, value);
            // A response that hands out or revokes a session id must never be cached.
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
    response
}

/// The session cookie as found among the request's `Cookie` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionCookie<'a> {
    Absent,
    Present(&'a str),
    /// Sent more than once: which one the browser meant cannot be known, so neither is used.
    Ambiguous,
}

impl<'a> SessionCookie<'a> {
    /// Scans every `Cookie` header as bytes: another cookie's bytes (UTF-8, Latin-1, anything a
    /// header may carry) never hide the session cookie. Only its own value must be UTF-8; one that
    /// is not is present but invalid.
    fn find(headers: &'a HeaderMap, name: &str) -> Self {
        let mut found = Self::Absent;
        let pairs = headers
            .get_all(COOKIE)
            .iter()
            .flat_map(|header| header.as_bytes().split(|&b| b == b';'))
            .filter_map(|pair| {
                let equals = pair.iter().position(|&b| b == b'=')?;
                Some((pair[..equals].trim_ascii(), pair[equals + 1..].trim_ascii()))
            });
        for (cookie_name, value) in pairs {
            if cookie_name == name.as_bytes() {
                found = match found {
                    Self::Absent => Self::Present(std::str::from_utf8(value).unwrap_or("")),
                    _ => return Self::Ambiguous,
                };
            }
        }
        found
    }

    fn value(self) -> Option<&'a str> {
        match self {
            Self::Present(value) => Some(value),
            Self::Absent | Self::Ambiguous => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(COOKIE, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    #[test]
    fn finds_the_named_cookie_among_others() {
        let map = headers(&[b"a=1; sid=abc ; b=2"]);
        assert_eq!(
            SessionCookie::find(&map, "sid"),
            SessionCookie::Present("abc")
        );
        assert_eq!(SessionCookie::find(&map, "other"), SessionCookie::Absent);
    }

    #[test]
    fn a_cookie_sent_twice_is_ambiguous_even_across_headers() {
        assert_eq!(
            SessionCookie::find(&headers(&[b"sid=a; sid=b"]), "sid"),
            SessionCookie::Ambiguous
        );
        assert_eq!(
            SessionCookie::find(&headers(&[b"sid=a", b"sid=b"]), "sid"),
            SessionCookie::Ambiguous
        );
    }

    #[test]
    fn foreign_bytes_in_other_cookies_do_not_hide_the_session_cookie() {
        for header in [&b"pref=caf\xc3\xa9; sid=abc"[..], b"pref=caf\xe9; sid=abc"] {
            assert_eq!(
                SessionCookie::find(&headers(&[header]), "sid"),
                SessionCookie::Present("abc")
            );
        }
        let invalid = headers(&[b"sid=\xff\xfe", b"x=1"]);
        assert_eq!(
            SessionCookie::find(&invalid, "sid"),
            SessionCookie::Present("")
        );
    }

    mod properties {
        use axum::routing::get;
        use axum::Router;
        use proptest::prelude::*;
        use tower::ServiceExt;

        use super::*;
        use crate::{MemoryStore, SessionLayer};

        /// A `Cookie` header of hostile pieces: arbitrary bytes, foreign cookies in UTF-8 and
        /// Latin-1, well-formed and malformed session ids, duplicates, and oversized values. Bytes a
        /// header cannot carry at all (controls other than tab) become `?`, so no input is discarded.
        fn cookie_header() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                prop::collection::vec(any::<u8>(), 0..40),
                "[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}"
                    .prop_map(|v| format!("sid={v}").into_bytes()),
                "[0-9a-fA-F\\-\"]{30,38}".prop_map(|v| format!("sid={v}").into_bytes()),
                prop::collection::vec(any::<u8>(), 0..40)
                    .prop_map(|v| [b"sid=".to_vec(), v].concat()),
                Just(b"pref=caf\xc3\xa9".to_vec()),
                Just(b"pref=caf\xe9".to_vec()),
                Just(format!("big={}", "v".repeat(8192)).into_bytes()),
            ];
            prop::collection::vec(piece, 0..6).prop_map(|pieces| {
                let mut header = pieces.join(&b"; "[..]);
                for byte in &mut header {
                    if (byte.is_ascii_control() && *byte != b'\t') || *byte == 0x7f {
                        *byte = b'?';
                    }
                }
                header
            })
        }

        /// The rule, decided by the `cookie` crate's parser rather than ours: exactly one cookie
        /// named `sid` among all `Cookie` headers, whose value is a version-4 UUID written as 32
        /// lowercase hex digits. Non-ASCII bytes are masked first (they can neither form the name
        /// `sid` nor a valid id), since the crate parses text.
        fn reaches_the_store(headers: &[Vec<u8>]) -> bool {
            let values: Vec<String> = headers
                .iter()
                .map(|h| {
                    h.iter()
                        .map(|&b| if b.is_ascii() { b as char } else { 'x' })
                        .collect::<String>()
                })
                .flat_map(|h| {
                    cookie::Cookie::split_parse(h)
                        .filter_map(Result::ok)
                        .filter(|c| c.name() == "sid")
                        .map(|c| c.value().to_owned())
                        .collect::<Vec<_>>()
                })
                .collect();
            matches!(values.as_slice(), [v] if uuid::Uuid::try_parse(v).is_ok_and(|id| {
                id.get_version_num() == 4
                    && id.get_variant() == uuid::Variant::RFC4122
                    && id.simple().to_string() == *v
            }))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            #[test]
            fn arbitrary_cookie_headers_never_fail_and_only_well_formed_ids_reach_the_store(
                headers in prop::collection::vec(cookie_header(), 1..4)
            ) {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    let layer = SessionLayer::new(MemoryStore::default());
                    let metrics = layer.metrics();
                    let handler = |session: Session| async move {
                        session.get::<u64>("n").await.map(|n| n.unwrap_or(0).to_string())
                    };
                    let app = Router::new().route("/", get(handler)).layer(layer);
                    let mut request = Request::get("/");
                    for header in &headers {
                        request = request.header(COOKIE, HeaderValue::from_bytes(header).unwrap());
                    }
                    let response = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
                    prop_assert_eq!(response.status(), axum::http::StatusCode::OK);
                    prop_assert_eq!(metrics.snapshot().loads, u64::from(reaches_the_store(&headers)));
                    Ok(())
                })?;
            }
        }
    }
}

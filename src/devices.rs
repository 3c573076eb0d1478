//! "Your devices": a user's live sessions, with when each started, when it was last seen and from
//! which browser; one of them ended by its handle; every one but the current ended ("log out other
//! devices", after a password change). A login records its request's `User-Agent` (cut to 256
//! bytes) and, when the layer is told where to find it ([`ClientIp`]), its client's IP.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use http::header::USER_AGENT;
use http::{HeaderName, HeaderValue, Request};

use crate::error::Error;
use crate::hooks::{SessionEvent, SessionEventKind};
use crate::id::{log_prefix, Token};
use crate::metrics::{Event, Op};
use crate::session::Session;
use crate::store::ttl::now_ms;
use crate::store::{Listed, HANDLE_FIELD, IP_FIELD, SEEN_FIELD, USER_AGENT_FIELD, USER_AGENT_MAX};

/// Where a login finds its client's IP, for the device list
/// ([`SessionLayer::with_client_ip`](crate::SessionLayer::with_client_ip)). Without it, no IP is
/// recorded.
///
/// # Examples
///
/// ```
/// use axum_redis_session::{ClientIp, MemoryStore, SessionLayer};
///
/// // Behind a proxy that sets X-Real-IP (and strips any the client sent):
/// let layer = SessionLayer::new(MemoryStore::default())
///     .with_client_ip(ClientIp::Header(http::HeaderName::from_static("x-real-ip")));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientIp {
    /// The peer address of the connection, from axum's `ConnectInfo<SocketAddr>` (serve the app
    /// with `into_make_service_with_connect_info::<SocketAddr>()`).
    Socket,
    /// A header that a proxy you trust sets. With several comma-separated addresses (as
    /// `X-Forwarded-For` holds), the last one: the address that proxy saw.
    Header(HeaderName),
}

/// One of a user's live sessions, as [`Session::devices`] lists them.
///
/// # Examples
///
/// ```
/// # async fn page(session: axum_redis_session::Session) -> Result<(), axum_redis_session::Error> {
/// for device in session.devices().await? {
///     let browser = device.user_agent.as_deref().unwrap_or("unknown browser");
///     println!("{browser}, last seen {} (this one: {})", device.last_seen, device.current);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Device {
    /// An opaque handle for [`Session::end_device`]: neither the session's token nor its key in
    /// the store, and good only for its own user's requests.
    pub handle: String,
    /// When the session was created, in unix milliseconds.
    pub created: i64,
    /// When a request last loaded it, in unix milliseconds, as of the last idle-timeout roll (it
    /// may lag by up to a tenth of the idle timeout: reads write nothing more for it).
    pub last_seen: i64,
    /// The `User-Agent` of the request that logged it in, cut to 256 bytes.
    pub user_agent: Option<String>,
    /// The client IP of that request, when the layer records IPs ([`ClientIp`]).
    pub ip: Option<String>,
    /// Whether it is the session of the request asking.
    pub current: bool,
}

/// What a request tells about its client, kept until a login may record it. Cheap: the header is
/// shared, not copied, and nothing is parsed unless the request logs in.
#[derive(Debug, Default)]
pub(crate) struct Client {
    user_agent: Option<HeaderValue>,
    ip: Option<HeaderValue>,
}

impl Client {
    pub(crate) fn of<B>(request: &Request<B>, ip: Option<&ClientIp>) -> Self {
        let ip = match ip {
            None => None,
            Some(ClientIp::Socket) => request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .and_then(|ConnectInfo(peer)| HeaderValue::from_str(&peer.ip().to_string()).ok()),
            Some(ClientIp::Header(name)) => request.headers().get(name).cloned(),
        };
        Self {
            user_agent: request.headers().get(USER_AGENT).cloned(),
            ip,
        }
    }

    /// The device fields a login writes: a fresh handle, now as last seen, the user agent and IP
    /// (removed when absent, so that a login from another browser does not keep the last one's).
    pub(crate) fn login_fields(&self) -> [(&'static str, Option<String>); 4] {
        let user_agent = self.user_agent.as_ref().map(|value| {
            let text = String::from_utf8_lossy(value.as_bytes());
            let mut end = text.len().min(USER_AGENT_MAX);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_owned()
        });
        let ip = self.ip.as_ref().and_then(|value| {
            let text = value.to_str().ok()?;
            let last = text.rsplit(',').next()?.trim();
            last.parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| ip.to_string())
        });
        [
            (HANDLE_FIELD, Some(Token::generate().as_str().to_owned())),
            (SEEN_FIELD, Some(now_ms().to_string())),
            (USER_AGENT_FIELD, user_agent),
            (IP_FIELD, ip),
        ]
    }
}

impl Session {
    /// The live sessions of this session's user, most recently seen first: one round trip on one
    /// server. Empty when the session is bound to no user.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn page(session: axum_redis_session::Session) -> Result<usize, axum_redis_session::Error> {
    /// let others = session.devices().await?.iter().filter(|d| !d.current).count();
    /// # Ok(others) }
    /// ```
    pub async fn devices(&self) -> Result<Vec<Device>, Error> {
        let Some(user) = self.user().await? else {
            return Ok(Vec::new());
        };
        let current = self.key_id().map(|key| key.as_str().to_owned());
        let mut devices: Vec<Device> = self
            .shared()
            .store
            .devices(&user)
            .await?
            .into_iter()
            .map(|listed: Listed| Device {
                current: current.as_deref() == Some(listed.key_id.as_str()),
                handle: listed.handle,
                created: listed.created,
                last_seen: listed.seen,
                user_agent: listed.user_agent,
                ip: listed.ip,
            })
            .collect();
        devices.sort_by_key(|device| std::cmp::Reverse(device.last_seen));
        Ok(devices)
    }

    /// Ends the session of this session's user that [`Device::handle`] names, now. Returns `false`
    /// when the user has no such session (another user's handle, a stale one, garbage) or this
    /// session is bound to no user. Ending the current session is a logout: its cookie is removed.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn sign_out(session: axum_redis_session::Session, handle: String) -> Result<bool, axum_redis_session::Error> {
    /// let ended = session.end_device(&handle).await?; // false: answer 404
    /// # Ok(ended) }
    /// ```
    pub async fn end_device(&self, handle: &str) -> Result<bool, Error> {
        // Handles are tokens: anything else names no session and is not sent to the store.
        if Token::parse(handle).is_none() {
            return Ok(false);
        }
        let Some(user) = self.user().await? else {
            return Ok(false);
        };
        let shared = self.shared();
        let key = self.key_id().map(|key| key.log_prefix().to_owned());
        let ending = shared
            .store
            .end_device(&user, handle, &shared.config.limits);
        let ended = shared
            .metrics
            .observe(Op::Destroy, key.as_deref(), ending, |ended| {
                (!ended.is_empty()).then_some((Event::Destroy, "device session ended"))
            })
            .await?;
        let current = self.key_id().map(|key| key.as_str().to_owned());
        for id in &ended {
            // Ending the asking session is its logout; any other is revoked from here.
            let kind = if Some(id) == current.as_ref() {
                SessionEventKind::Destroy
            } else {
                SessionEventKind::Revoke
            };
            shared.notify(|| SessionEvent::new(kind, log_prefix(id), None, Some(&user)));
        }
        if ended.iter().any(|id| Some(id) == current.as_ref()) {
            self.destroyed();
        }
        Ok(!ended.is_empty())
    }

    /// Ends every session of this session's user but this one ("log out other devices"), now.
    /// Returns the user, or `None` (and ends nothing) when the session is bound to no user.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn password_changed(session: axum_redis_session::Session) -> Result<(), axum_redis_session::Error> {
    /// session.end_other_devices().await?;
    /// # Ok(()) }
    /// ```
    pub async fn end_other_devices(&self) -> Result<Option<String>, Error> {
        let (Some(user), Some(current)) = (self.user().await?, self.key_id()) else {
            return Ok(None);
        };
        let shared = self.shared();
        let ending = shared
            .store
            .end_other_devices(&user, current, &shared.config.limits);
        shared
            .metrics
            .observe(
                Op::DestroyEverywhere,
                Some(current.log_prefix()),
                ending,
                |()| Some((Event::Destroy, "every other session of the user ended")),
            )
            .await?;
        let kind = SessionEventKind::RevokeOthers;
        shared.notify(|| SessionEvent::new(kind, current.log_prefix(), None, Some(&user)));
        Ok(Some(user))
    }
}

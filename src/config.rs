//! Cookie and expiry settings, and the checks that reject unsafe or contradictory combinations.

use std::sync::Arc;

use cookie::SameSite;
use time::Duration;

use crate::devices::ClientIp;
use crate::error::Error;
use crate::id::{KeyId, Token};
use crate::store::Format;

/// What the layer and the session handle need to know, fixed when the layer is built. The stores see
/// only its [`Limits`].
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) cookie_name: String,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
    pub(crate) persistent: bool,
    pub(crate) limits: Limits,
    pub(crate) save_on_server_error: bool,
    pub(crate) hash_ids: bool,
    /// Where a login finds the client's IP for the device list; `None`: no IP recorded.
    pub(crate) client_ip: Option<ClientIp>,
    pub(crate) lock: LockSettings,
    /// The foreign format the store keeps sessions in, which decides the cookie's value and the
    /// ids; `None`: ours.
    pub(crate) format: Option<Arc<Format>>,
    /// Where tower-sessions' sessions are taken over from, if the layer migrates from it.
    #[cfg(feature = "tower-sessions")]
    pub(crate) migration: Option<Arc<crate::migrate::TowerSessionsMigration>>,
}

/// How `Session::lock` waits for a session's lock, and how long a lock lives unless renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LockSettings {
    /// The longest a request waits for another's lock before `Error::LockBusy`.
    pub(crate) wait: Duration,
    /// A lock frees itself this long after its holder last renewed it (renewals come three times
    /// per TTL): how long a holder that died blocks the session.
    pub(crate) ttl: Duration,
}

impl Default for LockSettings {
    fn default() -> Self {
        Self {
            wait: Duration::seconds(5),
            ttl: Duration::seconds(3),
        }
    }
}

/// A session's lifetime and size bounds: all a store call needs from the layer's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_timeout: Option<Duration>,
    pub(crate) max_bytes: usize,
    /// At a login, the most sessions the user may keep; the ones that expire first are destroyed.
    pub(crate) max_sessions_per_user: Option<u32>,
}

/// A read skips the TTL write while more than this share (in tenths) of the idle timeout remains.
const TOUCH_THRESHOLD_TENTHS: i64 = 9;

impl Default for Config {
    fn default() -> Self {
        Self {
            cookie_name: "sid".to_owned(),
            path: "/".to_owned(),
            domain: None,
            secure: true,
            same_site: SameSite::Lax,
            persistent: false,
            limits: Limits::default(),
            save_on_server_error: false,
            hash_ids: true,
            client_ip: None,
            lock: LockSettings::default(),
            format: None,
            #[cfg(feature = "tower-sessions")]
            migration: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::minutes(120),
            absolute_timeout: None,
            max_bytes: 64 * 1024,
            max_sessions_per_user: None,
        }
    }
}

impl Limits {
    pub(crate) fn idle_ms(&self) -> i64 {
        millis(self.idle_timeout)
    }

    pub(crate) fn absolute_ms(&self) -> Option<i64> {
        self.absolute_timeout.map(millis)
    }

    /// Reads refresh the TTL only once it has fallen below this, so read-heavy traffic rarely writes.
    pub(crate) fn touch_below_ms(&self) -> i64 {
        self.idle_ms() / 10 * TOUCH_THRESHOLD_TENTHS
    }

    fn validate(&self) -> Result<(), Error> {
        check(
            (Duration::seconds(1)..=MAX_TIMEOUT).contains(&self.idle_timeout),
            "idle_timeout",
            "must be between one second and ten years",
        )?;
        if let Some(absolute) = self.absolute_timeout {
            check(
                (Duration::seconds(1)..=MAX_TIMEOUT).contains(&absolute),
                "absolute_timeout",
                "must be between one second and ten years",
            )?;
        }
        check(self.max_bytes > 0, "max_bytes", "must be positive")?;
        check(
            self.max_sessions_per_user != Some(0),
            "max_sessions_per_user",
            "must be at least 1 (the session logging in)",
        )
    }
}

/// Timeouts beyond this are surely a mistake, and in milliseconds they would overflow Lua's numbers.
const MAX_TIMEOUT: Duration = Duration::days(3650);

impl Config {
    /// A fresh token, in the format's shape.
    pub(crate) fn new_token(&self) -> Token {
        match &self.format {
            Some(format) => format.new_token(),
            None => Token::generate(),
        }
    }

    /// The token a request's cookie value carries, if it is well-formed (and, in a foreign
    /// format, signed or encrypted as that format does).
    pub(crate) fn read_cookie(&self, value: &str) -> Option<Token> {
        match &self.format {
            Some(format) => format.read_cookie(&self.cookie_name, value),
            None => Token::parse(value),
        }
    }

    /// The cookie value handing out `token`.
    pub(crate) fn cookie_value(&self, token: &Token) -> String {
        match &self.format {
            Some(format) => format.cookie_value(&self.cookie_name, token),
            None => token.as_str().to_owned(),
        }
    }

    /// Where the store keeps the session of `token`: a foreign format looks sessions up by the
    /// raw id, so it is never hashed there.
    pub(crate) fn key_id(&self, token: &Token) -> KeyId {
        token.key_id(self.hashes_ids())
    }

    pub(crate) fn hashes_ids(&self) -> bool {
        self.hash_ids && self.format.is_none()
    }

    /// Rejects settings that would be unsafe or that browsers would silently drop.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let name = &self.cookie_name;
        check(
            !name.is_empty() && name.bytes().all(is_cookie_name_byte),
            "cookie_name",
            "must be a non-empty RFC 6265 token (visible ASCII, no separators)",
        )?;
        check(
            self.path.starts_with('/') && self.path.bytes().all(is_attribute_byte),
            "path",
            "must start with '/' and hold only visible ASCII, no ';'",
        )?;
        if let Some(domain) = &self.domain {
            check(
                !domain.is_empty() && domain.bytes().all(|b| is_attribute_byte(b) && b != b' '),
                "domain",
                "must be a non-empty host name",
            )?;
        }
        check(
            self.same_site != SameSite::None || self.secure,
            "same_site",
            "SameSite=None requires Secure (browsers reject it otherwise)",
        )?;
        if name.starts_with("__Host-") {
            check(
                self.secure && self.path == "/" && self.domain.is_none(),
                "cookie_name",
                "a __Host- cookie requires Secure, Path=/ and no Domain",
            )?;
        }
        if name.starts_with("__Secure-") {
            check(
                self.secure,
                "cookie_name",
                "a __Secure- cookie requires Secure",
            )?;
        }
        check(
            (Duration::ZERO..=MAX_LOCK).contains(&self.lock.wait),
            "lock_wait",
            "must be between zero and an hour",
        )?;
        check(
            (Duration::milliseconds(100)..=MAX_LOCK).contains(&self.lock.ttl),
            "lock_ttl",
            "must be between 100 milliseconds and an hour",
        )?;
        self.limits.validate()
    }
}

/// A lock is for a critical section of a request, not for holding a session for longer.
const MAX_LOCK: Duration = Duration::hours(1);

fn check(ok: bool, option: &'static str, reason: &'static str) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::Config { option, reason })
    }
}

/// Bytes a `Set-Cookie` attribute value may hold; anything else would make the header invalid and
/// the cookie silently dropped.
fn is_attribute_byte(b: u8) -> bool {
    (b.is_ascii_graphic() || b == b' ') && b != b';'
}

fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.whole_milliseconds()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option_of(config: Config) -> &'static str {
        match config.validate() {
            Err(Error::Config { option, .. }) => option,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn same_site_none_without_secure_is_rejected() {
        let config = Config {
            same_site: SameSite::None,
            secure: false,
            ..Config::default()
        };
        assert_eq!(option_of(config), "same_site");
    }

    #[test]
    fn host_prefix_requires_secure_root_path_and_no_domain() {
        let host = |f: fn(&mut Config)| {
            let mut config = Config {
                cookie_name: "__Host-sid".into(),
                ..Config::default()
            };
            f(&mut config);
            config
        };
        host(|_| {}).validate().unwrap();
        assert_eq!(option_of(host(|c| c.secure = false)), "cookie_name");
        assert_eq!(option_of(host(|c| c.path = "/app".into())), "cookie_name");
        assert_eq!(
            option_of(host(|c| c.domain = Some("example.com".into()))),
            "cookie_name"
        );
    }

    #[test]
    fn bad_names_and_timeouts_are_rejected() {
        let named = |name: &str| Config {
            cookie_name: name.into(),
            ..Config::default()
        };
        assert_eq!(option_of(named("")), "cookie_name");
        assert_eq!(option_of(named("a b")), "cookie_name");
        assert_eq!(option_of(named("a;b")), "cookie_name");
        let pathed = Config {
            path: "/app\n".into(),
            ..Config::default()
        };
        assert_eq!(option_of(pathed), "path");
        let timed = |idle_timeout| Config {
            limits: Limits {
                idle_timeout,
                ..Limits::default()
            },
            ..Config::default()
        };
        assert_eq!(option_of(timed(Duration::ZERO)), "idle_timeout");
        assert_eq!(option_of(timed(Duration::MAX)), "idle_timeout");
    }
}

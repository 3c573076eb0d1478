//! Foreign session formats (DESIGN §11): how another framework's app names a session in its
//! cookie and stores it in Redis, so that one login is shared with it. [`Format`] is the choice
//! and its settings; the cookie's side (ids, signing, encryption) is here, the value's side is
//! `document.rs`, and each framework's codecs have a file of their own.

mod document;
pub(crate) mod express;
#[cfg(feature = "laravel")]
pub(crate) mod laravel;
pub(crate) mod php;
#[cfg(feature = "tower-sessions")]
pub(crate) mod tower_sessions;

use std::fmt;

pub(crate) use self::document::Document;
use crate::error::Error;
use crate::id::Token;

/// Another framework's session format, for a [`RedisStore`](crate::RedisStore) whose sessions an
/// app in that framework shares ([`RedisStore::with_format`](crate::RedisStore::with_format)).
///
/// Each constructor starts from the framework's defaults: its key prefix and its cookie name,
/// which the layer then uses unless [`with_cookie_name`](crate::SessionLayer::with_cookie_name)
/// says otherwise. The values are read and written through the same [`Session`](crate::Session)
/// API as ours; what does not map to JSON (a PHP object) is kept byte for byte.
///
/// # Examples
///
/// ```
/// use axum_redis_session::Format;
///
/// // A plain PHP app whose own save handler writes `session:{id}`.
/// let format = Format::php().with_key_prefix("session:");
/// # let _ = format;
/// ```
#[derive(Clone)]
pub struct Format {
    kind: Kind,
    key_prefix: String,
}

#[derive(Clone)]
enum Kind {
    Php,
    #[cfg(feature = "laravel")]
    Laravel(Box<laravel::Encrypter>, laravel::Serialization),
    Express(express::Secrets),
}

impl fmt::Debug for Format {
    // The secrets stay out of it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Format")
            .field("name", &self.name())
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

impl Format {
    /// PHP's own session module with phpredis (`session.save_handler = redis`): keys
    /// `PHPREDIS_SESSION:{id}`, values in PHP's `php` session serialisation, the cookie
    /// `PHPSESSID` holding the id as it is.
    ///
    /// # Examples
    ///
    /// ```
    /// let format = axum_redis_session::Format::php();
    /// # let _ = format;
    /// ```
    pub fn php() -> Self {
        Self {
            kind: Kind::Php,
            key_prefix: "PHPREDIS_SESSION:".to_owned(),
        }
    }

    /// Laravel's `redis` session driver: keys `laravel_database_laravel_cache:{id}` (Laravel 8's
    /// prefixes on its default connection; 11+ drops the `:`), values PHP-serialised twice, the
    /// cookie `laravel_session` encrypted by `EncryptCookies` with `APP_KEY` (`base64:…` or 32 raw
    /// bytes). Cookies we write use AES-256-CBC unless [`with_laravel_cipher`](Self::with_laravel_cipher)
    /// says otherwise; both ciphers are read. Needs the `laravel` feature.
    ///
    /// A malformed key is [`Error::Config`] naming `laravel_app_key`.
    ///
    /// # Examples
    ///
    /// ```
    /// let key = "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    /// let format = axum_redis_session::Format::laravel(key)?;
    /// # Ok::<_, axum_redis_session::Error>(())
    /// ```
    #[cfg(feature = "laravel")]
    pub fn laravel(app_key: &str) -> Result<Self, Error> {
        let key = laravel::AppKey::parse(app_key, "laravel_app_key")?;
        Ok(Self {
            kind: Kind::Laravel(
                Box::new(laravel::Encrypter::new(
                    key,
                    Vec::new(),
                    laravel::Cipher::Aes256Cbc,
                )),
                laravel::Serialization::Php,
            ),
            key_prefix: "laravel_database_laravel_cache:".to_owned(),
        })
    }

    /// The cipher of the Laravel cookies we write: `AES-256-CBC` (the default) or `AES-256-GCM`,
    /// as Laravel's `cipher` setting names it. Anything else is [`Error::Config`] naming
    /// `laravel_cipher`; on another format it names `format`.
    ///
    /// # Examples
    ///
    /// ```
    /// let key = "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    /// let format = axum_redis_session::Format::laravel(key)?.with_laravel_cipher("AES-256-GCM")?;
    /// # Ok::<_, axum_redis_session::Error>(())
    /// ```
    #[cfg(feature = "laravel")]
    pub fn with_laravel_cipher(mut self, cipher: &str) -> Result<Self, Error> {
        let cipher = laravel::Cipher::parse(cipher, "laravel_cipher")?;
        self.laravel_mut()?.0.set_cipher(cipher);
        Ok(self)
    }

    /// Keys that Laravel 11+ still reads cookies with (`APP_PREVIOUS_KEYS`): cookies made with
    /// them are read, and ours are made with the current key. A malformed one is
    /// [`Error::Config`] naming `laravel_previous_keys`.
    ///
    /// # Examples
    ///
    /// ```
    /// let key = "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    /// let old = "base64:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    /// let format = axum_redis_session::Format::laravel(key)?.with_laravel_previous_keys([old])?;
    /// # Ok::<_, axum_redis_session::Error>(())
    /// ```
    #[cfg(feature = "laravel")]
    pub fn with_laravel_previous_keys<K: AsRef<str>>(
        mut self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Self, Error> {
        let keys = keys
            .into_iter()
            .map(|key| laravel::AppKey::parse(key.as_ref(), "laravel_previous_keys"))
            .collect::<Result<Vec<_>, _>>()?;
        self.laravel_mut()?.0.set_previous(keys);
        Ok(self)
    }

    /// How Laravel serialises the session's attributes before its cache store serialises that
    /// string again: `php` (the default, Laravel's `serialize()`) or `json` (9+,
    /// `session.serialization=json`). Anything else is [`Error::Config`] naming
    /// `laravel_serialization`; on another format it names `format`.
    ///
    /// # Examples
    ///
    /// ```
    /// let key = "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    /// let format = axum_redis_session::Format::laravel(key)?.with_laravel_serialization("json")?;
    /// # Ok::<_, axum_redis_session::Error>(())
    /// ```
    #[cfg(feature = "laravel")]
    pub fn with_laravel_serialization(mut self, serialization: &str) -> Result<Self, Error> {
        let chosen = laravel::Serialization::parse(serialization, "laravel_serialization")?;
        *self.laravel_mut()?.1 = chosen;
        Ok(self)
    }

    #[cfg(feature = "laravel")]
    fn laravel_mut(
        &mut self,
    ) -> Result<(&mut laravel::Encrypter, &mut laravel::Serialization), Error> {
        match &mut self.kind {
            Kind::Laravel(encrypter, serialization) => Ok((encrypter, serialization)),
            _ => Err(Error::Config {
                option: "format",
                reason: "Laravel's settings apply to the Laravel format only",
            }),
        }
    }

    /// express-session with connect-redis: keys `sess:{id}`, JSON values with express-session's
    /// `cookie` object, the cookie `connect.sid` signed with HMAC-SHA256 (`s:{id}.{signature}`).
    /// The first secret signs, any of them verifies, as express-session's `secret` array.
    ///
    /// No secret, or an empty one, is [`Error::Config`] naming `express secret`.
    ///
    /// # Examples
    ///
    /// ```
    /// let format = axum_redis_session::Format::express(["new secret", "old secret"])?;
    /// # Ok::<_, axum_redis_session::Error>(())
    /// ```
    pub fn express<S: AsRef<[u8]>>(secrets: impl IntoIterator<Item = S>) -> Result<Self, Error> {
        Ok(Self {
            kind: Kind::Express(express::Secrets::new(secrets)?),
            key_prefix: "sess:".to_owned(),
        })
    }

    /// The prefix of the keys, before the session id: the other app's, such as Laravel's
    /// `REDIS_PREFIX` and cache prefix together, or connect-redis' `prefix`.
    ///
    /// # Examples
    ///
    /// ```
    /// let format = axum_redis_session::Format::express(["s3cret"])?.with_key_prefix("myapp:");
    /// # Ok::<_, axum_redis_session::Error>(())
    /// ```
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The format's name, as `SESSION_FORMAT` spells it.
    pub(crate) fn name(&self) -> &'static str {
        match self.kind {
            Kind::Php => "php",
            #[cfg(feature = "laravel")]
            Kind::Laravel(..) => "laravel",
            Kind::Express(_) => "express",
        }
    }

    pub(crate) fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The cookie the other framework names its session with by default.
    pub(crate) fn cookie_name(&self) -> &'static str {
        match self.kind {
            Kind::Php => "PHPSESSID",
            #[cfg(feature = "laravel")]
            Kind::Laravel(..) => "laravel_session",
            Kind::Express(_) => "connect.sid",
        }
    }

    /// The key of the other framework's lock on session `id`, where it has one: phpredis'
    /// `{key}_LOCK` (taken when `redis.session.locking_enabled` is on), Laravel's `block()` lock
    /// (a cache lock named `session:{id}`). While it exists, we do not write.
    pub(crate) fn lock_key(&self, id: &str) -> Option<String> {
        match self.kind {
            Kind::Php => Some(format!("{}{id}_LOCK", self.key_prefix)),
            #[cfg(feature = "laravel")]
            Kind::Laravel(..) => Some(format!("{}session:{id}", self.key_prefix)),
            Kind::Express(_) => None,
        }
    }

    /// A fresh session id, as the other framework mints them, so that it accepts ours.
    pub(crate) fn new_token(&self) -> Token {
        Token::foreign(match self.kind {
            // PHP's default: 32 characters of 4 bits each (`session.sid_bits_per_character`).
            Kind::Php => Token::generate().as_str().to_owned(),
            #[cfg(feature = "laravel")]
            Kind::Laravel(..) => laravel::new_session_id(),
            Kind::Express(_) => express::new_session_id(),
        })
    }

    /// The session id a request's cookie `name` carries (its raw header value), if it is one the
    /// other framework would have made: a failed MAC or signature, or an id the framework would
    /// refuse, is none.
    #[cfg_attr(not(feature = "laravel"), allow(unused_variables))]
    pub(crate) fn read_cookie(&self, name: &str, value: &str) -> Option<Token> {
        let id = percent_decode(value).and_then(|value| match &self.kind {
            Kind::Php => Some(value).filter(|id| is_php_session_id(id)),
            #[cfg(feature = "laravel")]
            Kind::Laravel(encrypter, _) => encrypter
                .decrypt_cookie(name, &value)
                .filter(|id| laravel::is_session_id(id)),
            Kind::Express(secrets) => secrets.unsign_cookie(&value).map(str::to_owned),
        });
        if id.is_none() && !value.is_empty() {
            // Without the value: a forged or stale cookie is no reason to log a secret.
            tracing::warn!(
                format = self.name(),
                cookie = name,
                "session cookie does not verify in its format; the request starts a new session"
            );
        }
        id.map(Token::foreign)
    }

    /// The value of cookie `name` carrying `token`, percent-encoded as the framework's own
    /// cookies are (PHP reads a bare `+` as a space).
    #[cfg_attr(not(feature = "laravel"), allow(unused_variables))]
    pub(crate) fn cookie_value(&self, name: &str, token: &Token) -> String {
        let plain = match &self.kind {
            Kind::Php => return token.as_str().to_owned(),
            #[cfg(feature = "laravel")]
            Kind::Laravel(encrypter, _) => encrypter.encrypt_cookie(name, token.as_str()),
            Kind::Express(secrets) => secrets.sign_cookie(token.as_str()),
        };
        percent_encode(&plain)
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.key_prefix.is_empty() {
            return Err(Error::Config {
                option: "format key_prefix",
                reason: "must not be empty",
            });
        }
        Ok(())
    }
}

/// What PHP's session module accepts as an id: `[a-zA-Z0-9,-]`, at most 256 characters.
fn is_php_session_id(id: &str) -> bool {
    (1..=256).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b',' || b == b'-')
}

/// Every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) as `%XX`: what PHP's `rawurlencode`
/// and JavaScript's `encodeURIComponent` agree on, and what both frameworks decode.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `%XX` escapes decoded; `None` for a broken escape or text that is not UTF-8 once decoded.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = text.get(at + 1..at + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_round_trips_and_escapes_what_php_would_misread() {
        let text = "s:a+b/c=d.e_f~g";
        let encoded = percent_encode(text);
        assert_eq!(encoded, "s%3Aa%2Bb%2Fc%3Dd.e_f~g");
        assert_eq!(percent_decode(&encoded).as_deref(), Some(text));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn php_ids_are_what_its_session_module_accepts() {
        let token = Format::php().new_token();
        assert!(is_php_session_id(token.as_str()));
        assert_eq!(token.as_str().len(), 32);
        for bad in ["", "a_b", "a b", "é", &"a".repeat(257)] {
            assert!(!is_php_session_id(bad), "{bad}");
        }
        let format = Format::php();
        assert_eq!(
            format
                .read_cookie("PHPSESSID", "abc,-9")
                .map(|t| t.as_str().to_owned()),
            Some("abc,-9".to_owned())
        );
        assert!(format.read_cookie("PHPSESSID", "a%20b").is_none());
    }

    #[test]
    fn an_express_cookie_is_read_back_only_with_its_secret() {
        let format = Format::express(["one"]).unwrap();
        let token = format.new_token();
        let value = format.cookie_value("connect.sid", &token);
        assert!(value.starts_with("s%3A"), "{value}");
        assert_eq!(format.read_cookie("connect.sid", &value), Some(token));
        let other = Format::express(["two"]).unwrap();
        assert_eq!(other.read_cookie("connect.sid", &value), None);
    }
}

//! express-session's format, as connect-redis stores it (INTEROP.md §3): the key `sess:{id}`, a
//! JSON object holding the application's fields beside express-session's own `cookie` object, a
//! TTL taken from that object's `expires`, and the cookie `connect.sid` holding
//! `s:{id}.{signature}`, the signature an unpadded standard-base64 HMAC-SHA256 of the id.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::Error;

/// The longest session id read from a cookie: express's own are 32 characters, and an id is part
/// of a Redis key, so a long one is refused rather than looked up.
pub(crate) const MAX_SESSION_ID_LEN: usize = 256;

/// The field express-session keeps its cookie's settings in.
const COOKIE_FIELD: &str = "cookie";

/// The secrets express-session signs its cookie with: the first signs, any of them verifies, so a
/// secret can be rotated without logging anyone out.
#[derive(Clone)]
pub(crate) struct Secrets(Vec<Hmac<Sha256>>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} kept out of logs)", self.0.len())
    }
}

impl Secrets {
    /// The secrets, newest first. None, or an empty one, is a configuration error: a cookie signed
    /// with an empty key is forgeable.
    pub(crate) fn new<S: AsRef<[u8]>>(secrets: impl IntoIterator<Item = S>) -> Result<Self, Error> {
        let invalid = |reason| Error::Config {
            option: "express secret",
            reason,
        };
        let mut keys = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.is_empty() {
                return Err(invalid("a secret is empty"));
            }
            keys.push(Hmac::new_from_slice(secret).expect("HMAC takes a key of any length"));
        }
        if keys.is_empty() {
            return Err(invalid("no secret given"));
        }
        Ok(Self(keys))
    }

    /// The cookie's value for `id` before percent-encoding: `s:{id}.{signature}`.
    pub(crate) fn sign_cookie(&self, id: &str) -> String {
        let mut mac = self.0[0].clone();
        mac.update(id.as_bytes());
        let signature = STANDARD_NO_PAD.encode(mac.finalize().into_bytes());
        format!("s:{id}.{signature}")
    }

    /// The session id of a percent-decoded cookie value whose signature one of the secrets made;
    /// `None` for an unsigned value, a bad signature or an id too long to be one.
    pub(crate) fn unsign_cookie<'a>(&self, value: &'a str) -> Option<&'a str> {
        let (id, signature) = value.strip_prefix("s:")?.rsplit_once('.')?;
        if id.is_empty() || id.len() > MAX_SESSION_ID_LEN {
            return None;
        }
        let signature = STANDARD_NO_PAD.decode(signature).ok()?;
        let verified = self.0.iter().any(|key| {
            let mut mac = key.clone();
            mac.update(id.as_bytes());
            mac.verify_slice(&signature).is_ok()
        });
        verified.then_some(id)
    }
}

/// A fresh session id as express-session mints one (uid-safe's `uid(24)`): 24 random bytes in
/// unpadded URL-safe base64, 32 characters.
pub(crate) fn new_session_id() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One session's stored value: the application's fields, and express-session's cookie object,
/// kept as it was read so that express finds its settings again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub(crate) fields: Map<String, Value>,
    pub(crate) cookie: Map<String, Value>,
}

impl Record {
    /// A session we create: the cookie object express-session writes for a browser-session
    /// cookie, without which express fails to load the session.
    pub(crate) fn new() -> Self {
        let cookie = serde_json::json!({
            "originalMaxAge": null,
            "expires": null,
            "httpOnly": true,
            "path": "/",
        });
        let Value::Object(cookie) = cookie else {
            unreachable!("a JSON object literal")
        };
        Self {
            fields: Map::new(),
            cookie,
        }
    }

    /// A stored value; `None` when it is not a JSON object or its `cookie` is not one, which
    /// express could not load either.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        let Ok(Value::Object(mut fields)) = serde_json::from_slice(bytes) else {
            return None;
        };
        let Some(Value::Object(cookie)) = fields.remove(COOKIE_FIELD) else {
            return None;
        };
        Some(Self { fields, cookie })
    }

    /// The value to store, as `JSON.stringify` of express's session would give it.
    pub(crate) fn to_json(&self) -> String {
        let mut object = Map::with_capacity(self.fields.len() + 1);
        object.insert(COOKIE_FIELD.to_owned(), Value::Object(self.cookie.clone()));
        for (name, value) in &self.fields {
            object.insert(name.clone(), value.clone());
        }
        Value::Object(object).to_string()
    }

    /// The TTL connect-redis gives this value at `now`, in seconds: until the cookie's `expires`
    /// rounded up, else `default` (connect-redis' `ttl` option). Zero or less: the session has
    /// expired, and connect-redis deletes it rather than store it.
    pub(crate) fn ttl_secs(&self, now: OffsetDateTime, default: i64) -> i64 {
        let expires = self
            .cookie
            .get("expires")
            .and_then(Value::as_str)
            .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok());
        match expires {
            Some(expires) => {
                let ms = (expires - now).whole_milliseconds();
                i64::try_from(ms.div_euclid(1000) + i128::from(ms.rem_euclid(1000) != 0))
                    .unwrap_or(i64::MAX)
            }
            None => default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// express-session 1.19's own signer, through `tests/express/cookie.js` (from the packages
    /// `.ci/run` installs with `npm ci`).
    fn express(mode: &str, secret: &str, value: &str) -> String {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/express");
        let output = std::process::Command::new("node")
            .current_dir(dir)
            .args(["cookie.js", mode, secret, value])
            .output()
            .expect("node is installed");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    #[test]
    fn express_accepts_our_cookies_and_we_accept_its() {
        for secret in ["keyboard cat", "ünïcode and spaces", "s3cr3t/+="] {
            let ours = secrets(&[secret]);
            let id = new_session_id();
            let cookie = ours.sign_cookie(&id);
            assert_eq!(express("sign", secret, &id), cookie);
            assert_eq!(express("unsign", secret, &cookie), id);
            assert_eq!(express("unsign", "other", &cookie), "false");
        }
    }

    fn secrets(list: &[&str]) -> Secrets {
        Secrets::new(list.iter().map(|s| s.as_bytes())).unwrap()
    }

    #[test]
    fn a_signed_id_verifies_under_any_secret_and_a_changed_one_does_not() {
        let old = secrets(&["keyboard cat"]);
        let rotated = secrets(&["new secret", "keyboard cat"]);
        let id = new_session_id();
        let cookie = old.sign_cookie(&id);
        assert_eq!(rotated.unsign_cookie(&cookie), Some(id.as_str()));
        assert_ne!(rotated.sign_cookie(&id), cookie, "the newest secret signs");
        let other = if id.starts_with('x') { 'y' } else { 'x' };
        let tampered = format!("s:{other}{}", &cookie[3..]);
        assert_eq!(old.unsign_cookie(&tampered), None);
        assert_eq!(old.unsign_cookie(&id), None, "unsigned");
        assert_eq!(secrets(&["other"]).unsign_cookie(&cookie), None);
        let long = old.sign_cookie(&"a".repeat(MAX_SESSION_ID_LEN + 1));
        assert_eq!(old.unsign_cookie(&long), None, "too long");
    }

    #[test]
    fn no_secret_or_an_empty_one_names_the_option() {
        for list in [&[][..], &[""][..], &["ok", ""][..]] {
            let error = Secrets::new(list.iter().map(|s| s.as_bytes())).unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::Config {
                        option: "express secret",
                        ..
                    }
                ),
                "{error:?}"
            );
        }
        assert!(!format!("{:?}", secrets(&["hunter2"])).contains("hunter2"));
    }

    #[test]
    fn new_ids_are_32_url_safe_characters_and_differ() {
        let (a, b) = (new_session_id(), new_session_id());
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }

    #[test]
    fn a_record_keeps_its_cookie_object_and_fields() {
        let stored = br#"{"cookie":{"originalMaxAge":60000,"expires":"2026-12-04T06:01:00.500Z","secure":false,"httpOnly":true,"path":"/"},"user":"alice","cart":{"items":[1,2]}}"#;
        let record = Record::parse(stored).unwrap();
        assert_eq!(record.fields["user"], "alice");
        assert_eq!(record.cookie["originalMaxAge"], 60000);
        let again: Value = serde_json::from_str(&record.to_json()).unwrap();
        let original: Value = serde_json::from_slice(stored).unwrap();
        assert_eq!(again, original);
        let now = OffsetDateTime::parse("2026-12-04T06:00:00Z", &Rfc3339).unwrap();
        assert_eq!(
            record.ttl_secs(now, 86_400),
            61,
            "rounded up, as connect-redis does"
        );
        let later = OffsetDateTime::parse("2026-12-04T06:02:00Z", &Rfc3339).unwrap();
        assert!(record.ttl_secs(later, 86_400) <= 0, "expired");
    }

    #[test]
    fn a_new_record_has_express_cookie_object_and_the_default_ttl() {
        let record = Record::new();
        let json: Value = serde_json::from_str(&record.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"cookie": {"originalMaxAge": null, "expires": null, "httpOnly": true, "path": "/"}})
        );
        assert_eq!(record.ttl_secs(OffsetDateTime::now_utc(), 86_400), 86_400);
    }

    #[test]
    fn values_express_could_not_load_are_refused() {
        for bad in [&b"[]"[..], b"{}", br#"{"cookie":1}"#, b"not json", b"\xff"] {
            assert_eq!(
                Record::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

//! Everything about the session cookie: finding it among the request's `Cookie` headers, building
//! it with the configured attributes (and the removal cookie), and writing it onto the response.

use cookie::Cookie;
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use time::Duration;

use crate::config::Config;
use crate::id::Token;

/// The session cookie as found among the request's `Cookie` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionCookie<'a> {
    Absent,
    Present(&'a str),
    /// Sent more than once: which one the browser meant cannot be known, so neither is used.
    Ambiguous,
}

impl<'a> SessionCookie<'a> {
    /// Scans every `Cookie` header as bytes: another cookie's bytes (UTF-8, Latin-1, anything a
    /// header may carry) never hide the session cookie. Only its own value must be UTF-8; one that
    /// is not is present but invalid.
    pub(crate) fn find(headers: &'a HeaderMap, name: &str) -> Self {
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

    pub(crate) fn value(self) -> Option<&'a str> {
        match self {
            Self::Present(value) => Some(value),
            Self::Absent | Self::Ambiguous => None,
        }
    }
}

/// What the response must tell the browser about the session cookie.
#[derive(Debug)]
pub(crate) enum CookieUpdate {
    /// Hand out this token; a persistent cookie lives as long as the session, `ttl_ms` more.
    Set { token: Token, ttl_ms: i64 },
    /// Tell the browser to forget the session.
    Remove,
}

impl CookieUpdate {
    /// Adds the `Set-Cookie` header, with the configured attributes, to `headers`.
    pub(crate) fn write(self, config: &Config, headers: &mut HeaderMap) {
        let cookie = match self {
            Self::Set { token, ttl_ms } => build(
                config,
                config.cookie_value(&token),
                Some(Duration::milliseconds(ttl_ms)),
            ),
            Self::Remove => removal(config),
        };
        // The value is already in its wire form (a foreign format's is percent-encoded as that
        // framework writes it), so it is written as it is.
        if let Ok(value) = HeaderValue::try_from(cookie.to_string()) {
            headers.append(SET_COOKIE, value);
            // A response that hands out or revokes a session id must never be cached.
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
}

/// A cookie carrying `value` with the configured attributes; `max_age` only for persistent cookies.
fn build(config: &Config, value: String, max_age: Option<Duration>) -> Cookie<'static> {
    let mut cookie = Cookie::build((config.cookie_name.clone(), value))
        .path(config.path.clone())
        .secure(config.secure)
        .http_only(true)
        .same_site(config.same_site);
    if let Some(domain) = &config.domain {
        cookie = cookie.domain(domain.clone());
    }
    if config.persistent {
        if let Some(max_age) = max_age {
            cookie = cookie.max_age(max_age);
        }
    }
    cookie.build()
}

/// A cookie that tells the browser to forget the session, with the attributes it was set with.
fn removal(config: &Config) -> Cookie<'static> {
    let mut cookie = build(config, String::new(), None);
    cookie.make_removal();
    cookie
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
        use axum::body::Body;
        use axum::http::Request;
        use axum::routing::get;
        use axum::Router;
        use proptest::prelude::*;
        use tower::ServiceExt;

        use super::*;
        use crate::{MemoryStore, Session, SessionLayer};

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

    #[test]
    fn defaults_are_valid_and_safe() {
        let config = Config::default();
        config.validate().unwrap();
        let cookie = build(&config, "v".into(), Some(Duration::minutes(1))).to_string();
        assert_eq!(cookie, "sid=v; HttpOnly; SameSite=Lax; Secure; Path=/");
    }

    #[test]
    fn persistent_cookies_carry_max_age_and_removal_keeps_attributes() {
        let config = Config {
            persistent: true,
            domain: Some("example.com".into()),
            ..Config::default()
        };
        let set = build(&config, "v".into(), Some(Duration::seconds(60))).to_string();
        assert!(set.contains("Max-Age=60"), "{set}");
        let removal = removal(&config).to_string();
        for attribute in [
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Domain=example.com",
            "Max-Age=0",
        ] {
            assert!(removal.contains(attribute), "{removal} lacks {attribute}");
        }
    }

    #[test]
    fn setting_or_removing_the_cookie_forbids_caching() {
        let config = Config::default();
        for update in [
            CookieUpdate::Set {
                token: Token::generate(),
                ttl_ms: 1_000,
            },
            CookieUpdate::Remove,
        ] {
            let mut headers = HeaderMap::new();
            update.write(&config, &mut headers);
            assert!(headers[SET_COOKIE].to_str().unwrap().starts_with("sid="));
            assert_eq!(headers[CACHE_CONTROL], "no-store");
        }
    }
}

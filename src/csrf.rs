//! CSRF tokens tied to the session, with nothing stored for them.
//!
//! A session's CSRF secret is HMAC-SHA256 keyed by the session token (the cookie's value) over a
//! fixed, versioned context. Redis holds only the SHA-256 of the token, as the key id, so nothing
//! in Redis lets anyone compute the secret; a new id (a login, [`Session::cycle_id`]) is a new
//! token and so a new secret; and with nothing stored, there is no write for it and no first use
//! for two requests to race on. (With `SessionLayer::with_hashed_key_ids(false)` the keys are the
//! raw tokens, so whoever reads Redis can compute the secret, as they can take over the session.)
//!
//! The secret itself never leaves the layer: [`Session::csrf_token`] hands out a masked copy, fresh
//! on every call: a random 32-byte mask followed by the mask XOR the secret, as unpadded base64url
//! (86 characters). A compressed page that reflects input next to the token thus never repeats its
//! bytes (BREACH). [`Session::verify_csrf`], or the [`CsrfVerified`] extractor, unmasks a presented
//! token and compares it with the secret in constant time.

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::HeaderName;
use sha2::Sha256;

use crate::error::Error;
use crate::id::Token;
use crate::session::Session;

/// The header [`CsrfVerified`] reads.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");

/// Bytes of the secret, and of the mask that hides it.
const SECRET_LEN: usize = 32;

/// Characters of every token [`Session::csrf_token`] returns: 64 bytes (the mask, then the masked
/// secret) as unpadded base64url. A presented token of any other length is refused unread.
const TOKEN_TEXT_LEN: usize = (2 * SECRET_LEN * 8).div_ceil(6);

/// What the secret is derived for. Versioned: a change of derivation takes a new context, so that
/// it can never accept a token the old one issued.
const CONTEXT: &[u8] = b"axum-redis-session CSRF secret v1";

type Secret = [u8; SECRET_LEN];

impl Session {
    /// A CSRF token for this session, for forms and scripts: a different string on every call, each
    /// of which verifies (by [`verify_csrf`](Self::verify_csrf)) until the session's id changes,
    /// e.g. at [`login`](Self::login). Nothing is stored for it, so it costs no write; on a request
    /// without a session it starts one (saved at the end, its cookie set), and after a
    /// [`cycle_id`](Self::cycle_id) or a login in the same request it is already the new id's.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn form(session: axum_redis_session::Session) -> Result<String, axum_redis_session::Error> {
    /// let token = session.csrf_token().await?;
    /// Ok(format!(r#"<input type="hidden" name="csrf" value="{token}">"#))
    /// # }
    /// ```
    pub async fn csrf_token(&self) -> Result<String, Error> {
        let token = self.token_at_end().await?;
        Ok(masked(&secret(token)))
    }

    /// Checks a token a request presented (a form field, a header): `Ok` when it is one that
    /// [`csrf_token`](Self::csrf_token) issued for the session the request came with, compared in
    /// constant time; else [`Error::Csrf`] (403), also when the request has no live session or the
    /// text is not a token at all.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn post(session: axum_redis_session::Session, presented: String) -> Result<(), axum_redis_session::Error> {
    /// session.verify_csrf(&presented).await?;
    /// // … the change the form asked for
    /// # Ok(()) }
    /// ```
    pub async fn verify_csrf(&self, presented: &str) -> Result<(), Error> {
        match (self.live_token().await?, unmasked(presented)) {
            // `verify_slice` compares in constant time: timing the answers tells an attacker
            // nothing about how much of a guess was right.
            (Some(token), Some(unmasked)) if keyed(token).verify_slice(&unmasked).is_ok() => Ok(()),
            _ => Err(Error::Csrf),
        }
    }
}

/// The session's CSRF secret: nothing but the token can give it.
fn secret(token: &Token) -> Secret {
    keyed(token).finalize().into_bytes().into()
}

/// The HMAC whose output is the secret, keyed by the token, over the context.
fn keyed(token: &Token) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_str().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(CONTEXT);
    mac
}

/// The secret under a fresh random mask, as text: the mask, then the mask XOR the secret.
fn masked(secret: &Secret) -> String {
    let mut mask = [0; SECRET_LEN];
    // Like a session id's draw (`Token::generate`), a failing OS random source is fatal.
    getrandom::fill(&mut mask).expect("the OS random source failed");
    URL_SAFE_NO_PAD.encode([mask, xor(&mask, secret)].concat())
}

/// The secret a presented token hides, or `None` when it is no token [`masked`] could have made.
fn unmasked(presented: &str) -> Option<Secret> {
    // Checked first, so that a huge value is refused without decoding it.
    if presented.len() != TOKEN_TEXT_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(presented).ok()?;
    let (mask, hidden) = bytes.split_at(SECRET_LEN);
    Some(xor(mask, hidden))
}

/// The two byte strings XORed, byte by byte.
fn xor(a: &[u8], b: &[u8]) -> Secret {
    let mut out = [0; SECRET_LEN];
    for ((out, a), b) in out.iter_mut().zip(a).zip(b) {
        *out = a ^ b;
    }
    out
}

/// Proof that the request's `X-CSRF-Token` header holds a CSRF token of its session; extracting it
/// answers 403 otherwise (and 503 when the store cannot be reached).
///
/// # Examples
///
/// ```
/// use axum_redis_session::CsrfVerified;
///
/// async fn transfer(_: CsrfVerified) -> &'static str {
///     "done"
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CsrfVerified;

impl<S: Send + Sync> FromRequestParts<S> for CsrfVerified {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let presented = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        session
            .verify_csrf(presented)
            .await
            .map(|()| Self)
            .map_err(IntoResponse::into_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_hmac_sha256_of_the_context_keyed_by_the_token() {
        let token = Token::parse("0123456789ab4def8123456789abcdef").unwrap();
        // printf %s 'axum-redis-session CSRF secret v1' \
        //   | openssl dgst -sha256 -hmac 0123456789ab4def8123456789abcdef
        let hex: String = secret(&token).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "17f7c0cc1e3e16f90020b08e5c2fb9fdc97fee0bcfd474ebf033c945e1b945bc"
        );
    }

    #[test]
    fn every_mask_is_new_and_unmasks_to_the_secret() {
        let secret = secret(&Token::generate());
        let (a, b) = (masked(&secret), masked(&secret));
        assert_ne!(a, b);
        for token in [&a, &b] {
            assert_eq!(token.len(), TOKEN_TEXT_LEN);
            assert_eq!(unmasked(token), Some(secret));
        }
    }

    #[test]
    fn anything_but_a_masked_token_unmasks_to_nothing() {
        let token = masked(&secret(&Token::generate()));
        let mut last_bits_set = token.clone().into_bytes();
        // The last character carries 2 bits of data and 4 that must be zero.
        last_bits_set[TOKEN_TEXT_LEN - 1] = b'B';
        let last_bits_set = String::from_utf8(last_bits_set).unwrap();
        let padded = format!("{}=", &token[..TOKEN_TEXT_LEN - 1]);
        let megabyte = "A".repeat(1 << 20);
        for garbage in [
            "",
            &token[1..],
            &format!("{token}A"),
            &"!".repeat(TOKEN_TEXT_LEN),
            &format!("+{}", &token[1..]),
            &last_bits_set,
            &padded,
            &"é".repeat(TOKEN_TEXT_LEN / 2),
            &megabyte,
        ] {
            assert_eq!(unmasked(garbage), None, "{garbage:.100}");
        }
    }
}

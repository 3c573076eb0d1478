//! CSRF tokens tied to the session: created on first use, kept as crate metadata in the session,
//! replaced whenever the session's id is cycled (so a login gets a new one), and checked in
//! constant time, from a handler or by the [`CsrfVerified`] extractor.

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::HeaderName;

use crate::error::Error;
use crate::id::Token;
use crate::session::Session;
use crate::store::CSRF_FIELD;

/// The header [`CsrfVerified`] reads.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");

impl Session {
    /// The session's CSRF token, created (and saved with the session) on first use. Put it in
    /// forms and scripts; it changes when the id is cycled, e.g. at login.
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
        if let Some(token) = self.read_field(CSRF_FIELD).await? {
            return Ok(token);
        }
        let token = Token::generate().as_str().to_owned();
        self.write_json(CSRF_FIELD.to_owned(), Some(token.clone()));
        Ok(token)
    }

    /// Checks a token a request presented (a form field, a header) against the session's, in
    /// constant time: [`Error::Csrf`] (403) when it is not the session's, or the session has none.
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
        match self.read_field(CSRF_FIELD).await? {
            Some(token) if constant_time_eq(token.as_bytes(), presented.as_bytes()) => Ok(()),
            _ => Err(Error::Csrf),
        }
    }
}

/// Proof that the request's `X-CSRF-Token` header holds its session's CSRF token; extracting it
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

/// Equal bytes, in a time that depends only on the lengths: an attacker timing the answers learns
/// nothing about how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}

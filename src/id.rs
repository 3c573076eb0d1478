//! Session tokens (what the cookie carries) and key ids (what Redis sees).
//!
//! A token is the 32 lowercase hex digits of a version-4 UUID: 122 random bits from the OS CSPRNG.
//! Parsing is strict so that a malformed cookie never reaches the store. The key id is the lowercase
//! hex SHA-256 of the token, so a Redis dump, `MONITOR` or a replica never holds a usable token.

use std::fmt;

use sha2::{Digest, Sha256};

/// Length of a token in the cookie: a v4 UUID in its "simple" (hyphenless) form.
const TOKEN_LEN: usize = 32;

/// The secret a client holds in its cookie. Never logged, never sent to the store.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(String);

impl Token {
    pub(crate) fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Accepts only what [`Token::generate`] produces: 32 lowercase hex digits with the v4 version
    /// and RFC 4122 variant bits. Anything else is "no session".
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let bytes = value.as_bytes();
        let well_formed = bytes.len() == TOKEN_LEN
            && bytes
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            && bytes[12] == b'4'
            && matches!(bytes[16], b'8' | b'9' | b'a' | b'b');
        well_formed.then(|| Self(value.to_owned()))
    }

    /// A session id in another framework's format, which that format has checked.
    pub(crate) fn foreign(id: String) -> Self {
        Self(id)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The id under which the store keeps this session: the token's SHA-256, or the token itself
    /// for legacy readers and foreign formats, whose logs then name it by its hash's prefix.
    pub(crate) fn key_id(&self, hashed: bool) -> KeyId {
        let hex = sha256_hex(&self.0);
        if !hashed {
            return KeyId {
                log: hex[..LOG_PREFIX_LEN].to_owned(),
                id: self.0.clone(),
            };
        }
        KeyId {
            log: hex[..LOG_PREFIX_LEN].to_owned(),
            id: hex,
        }
    }
}

const LOG_PREFIX_LEN: usize = 8;

fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

/// The store-side name of a session: the hex SHA-256 of its token (or the token itself when hashing
/// is turned off for legacy readers, and in foreign formats).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KeyId {
    id: String,
    /// The first characters of the token's hash, which reveal nothing usable of the token.
    log: String,
}

impl KeyId {
    pub(crate) fn as_str(&self) -> &str {
        &self.id
    }

    /// A short prefix that identifies the session in logs without revealing anything usable.
    pub(crate) fn log_prefix(&self) -> &str {
        &self.log
    }
}

/// The log prefix of a key id the store handed back: its first 8 characters (none of an id too
/// short to have them, which no session has).
pub(crate) fn log_prefix(key_id: &str) -> &str {
    key_id.get(..8).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_back() {
        let token = Token::generate();
        assert_eq!(Token::parse(token.as_str()), Some(token));
    }

    #[test]
    fn parse_rejects_wrong_length_alphabet_case_and_version() {
        let good = Token::generate().as_str().to_owned();
        assert!(Token::parse(&good[1..]).is_none());
        assert!(Token::parse(&format!("{good}0")).is_none());
        assert!(Token::parse(&good.to_uppercase()).is_none());
        assert!(Token::parse(&good.replacen(&good[0..1], "g", 1)).is_none());
        let mut wrong_version = good.into_bytes();
        wrong_version[12] = b'1';
        assert!(Token::parse(std::str::from_utf8(&wrong_version).unwrap()).is_none());
        assert!(Token::parse("").is_none());
    }

    #[test]
    fn key_id_is_hex_sha256_of_the_token() {
        let token = Token::parse("0123456789ab4def8123456789abcdef").unwrap();
        // printf %s 0123456789ab4def8123456789abcdef | sha256sum
        assert_eq!(
            token.key_id(true).as_str(),
            "2cb2601b51d377a562b25e63ba5706bf148ee0a7c6df1cc2b05b03a9ec7de822"
        );
        assert_eq!(token.key_id(true).as_str().len(), 64);
        assert_eq!(token.key_id(false).as_str(), token.as_str());
        assert_eq!(token.key_id(false).log_prefix(), "2cb2601b");
    }

    #[test]
    fn token_debug_hides_the_secret() {
        let token = Token::generate();
        assert!(!format!("{token:?}").contains(token.as_str()));
    }
}

//! Where a session lives in Redis, computed from its cookie as another language would.

use sha2::{Digest, Sha256};

/// The Redis key of the session whose cookie carries `token`: `prefix` and the SHA-256 of the token,
/// in lowercase hex (with an empty `prefix`, the key id alone).
pub fn session_key(prefix: &str, token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

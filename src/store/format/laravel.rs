//! Laravel's cookies and ids (INTEROP.md §1): the session cookie is encrypted by `EncryptCookies`
//! with `APP_KEY` through Laravel's `Encrypter` (AES-256-CBC with an HMAC-SHA256 MAC, or
//! AES-256-GCM), its plaintext the session id behind a prefix that binds it to the cookie's name.
//! The same formats hold in Laravel 8 to 13; 11+ also reads cookies made with previous keys.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use aes_gcm::aead::{Aead, KeyInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use crate::error::Error;

/// The session key where Laravel's `web` guard keeps the logged-in user's id:
/// `login_web_` and the SHA-1 of `Illuminate\Auth\SessionGuard`.
pub(crate) const WEB_GUARD_USER_KEY: &str = "login_web_59ba36addc2b2f9401580f014c7f58ea4e30989d";

/// The length of a session id Laravel accepts (`Str::random(40)`).
const SESSION_ID_LEN: usize = 40;

/// The length of the cookie-name prefix in a cookie's plaintext: 40 hex digits and `|`.
const PREFIX_LEN: usize = 41;

/// An `APP_KEY`: 32 raw bytes, for AES-256.
#[derive(Clone)]
pub(crate) struct AppKey([u8; 32]);

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKey(kept out of logs)")
    }
}

impl AppKey {
    /// `APP_KEY` as Laravel reads it: `base64:` and the base64 of the key, or the key's raw
    /// bytes. Anything but 32 bytes is a configuration error naming `option`.
    pub(crate) fn parse(value: &str, option: &'static str) -> Result<Self, Error> {
        let invalid = |reason| Error::Config { option, reason };
        let bytes = match value.strip_prefix("base64:") {
            Some(encoded) => STANDARD
                .decode(encoded)
                .map_err(|_| invalid("not valid base64 after `base64:`"))?,
            None => value.as_bytes().to_vec(),
        };
        let key = bytes
            .try_into()
            .map_err(|_| invalid("must be 32 bytes, for AES-256"))?;
        Ok(Self(key))
    }
}

/// The cipher of the cookies we write; both are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cipher {
    Aes256Cbc,
    Aes256Gcm,
}

impl Cipher {
    /// Laravel's `cipher` setting, in any case; others (AES-128) are a configuration error.
    pub(crate) fn parse(value: &str, option: &'static str) -> Result<Self, Error> {
        match value.to_ascii_lowercase().as_str() {
            "aes-256-cbc" => Ok(Self::Aes256Cbc),
            "aes-256-gcm" => Ok(Self::Aes256Gcm),
            _ => Err(Error::Config {
                option,
                reason: "must be AES-256-CBC or AES-256-GCM",
            }),
        }
    }
}

/// How Laravel serialises a session's attributes (`session.serialization`), inside the string its
/// cache store serialises again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serialization {
    /// `serialize()`, Laravel's default.
    Php,
    /// `json_encode()`, Laravel 9+.
    Json,
}

impl Serialization {
    pub(crate) fn parse(value: &str, option: &'static str) -> Result<Self, Error> {
        match value {
            "php" => Ok(Self::Php),
            "json" => Ok(Self::Json),
            _ => Err(Error::Config {
                option,
                reason: "must be php or json",
            }),
        }
    }
}

/// Laravel's encrypted payload, before its outer base64: a JSON object of these strings.
struct Payload {
    iv: String,
    value: String,
    mac: String,
    tag: String,
}

impl Payload {
    fn to_json(&self) -> String {
        serde_json::json!({"iv": self.iv, "value": self.value, "mac": self.mac, "tag": self.tag})
            .to_string()
    }

    /// As Laravel's `validPayload`: `iv`, `value` and `mac` must be there; `tag` may be absent.
    fn parse(json: &[u8]) -> Option<Self> {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(json).ok()?;
        let text = |name: &str| object.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        Some(Self {
            iv: text("iv")?,
            value: text("value")?,
            mac: text("mac")?,
            tag: text("tag").unwrap_or_default(),
        })
    }
}

/// Laravel's `Encrypter` and `EncryptCookies`: the current key encrypts; it and the previous keys
/// decrypt.
#[derive(Debug, Clone)]
pub(crate) struct Encrypter {
    keys: Vec<AppKey>,
    cipher: Cipher,
}

impl Encrypter {
    /// The current key first, then previous ones (`APP_PREVIOUS_KEYS`, Laravel 11+).
    pub(crate) fn new(key: AppKey, previous: Vec<AppKey>, cipher: Cipher) -> Self {
        let mut keys = vec![key];
        keys.extend(previous);
        Self { keys, cipher }
    }

    pub(crate) fn set_cipher(&mut self, cipher: Cipher) {
        self.cipher = cipher;
    }

    /// Replaces the previous keys, keeping the current one.
    pub(crate) fn set_previous(&mut self, previous: Vec<AppKey>) {
        self.keys.truncate(1);
        self.keys.extend(previous);
    }

    /// `Encrypter::encryptString`: the payload for `plaintext`, under a fresh random IV.
    pub(crate) fn encrypt(&self, plaintext: &[u8]) -> String {
        let key = &self.keys[0].0;
        let payload = match self.cipher {
            Cipher::Aes256Cbc => {
                let mut iv = [0u8; 16];
                getrandom::fill(&mut iv).expect("the OS random source failed");
                let encryptor = cbc::Encryptor::<aes::Aes256>::new(key.into(), &iv.into());
                let value = STANDARD.encode(encryptor.encrypt_padded_vec_mut::<Pkcs7>(plaintext));
                let iv = STANDARD.encode(iv);
                let mac = cbc_mac(key, &iv, &value);
                Payload {
                    iv,
                    value,
                    mac,
                    tag: String::new(),
                }
            }
            Cipher::Aes256Gcm => {
                let mut iv = [0u8; 12];
                getrandom::fill(&mut iv).expect("the OS random source failed");
                let gcm = aes_gcm::Aes256Gcm::new(key.into());
                let mut sealed = gcm
                    .encrypt(&iv.into(), plaintext)
                    .expect("AES-GCM encrypts any cookie-sized input");
                let tag = sealed.split_off(sealed.len() - 16);
                Payload {
                    iv: STANDARD.encode(iv),
                    value: STANDARD.encode(sealed),
                    mac: String::new(),
                    tag: STANDARD.encode(tag),
                }
            }
        };
        STANDARD.encode(payload.to_json())
    }

    /// `Encrypter::decryptString` under any of the keys, by the payload's own cipher (a tag means
    /// GCM); the plaintext and the index of the key that decrypted it, or `None` when no key
    /// does or the payload is malformed.
    pub(crate) fn decrypt(&self, payload: &str) -> Option<(Vec<u8>, usize)> {
        let json = STANDARD.decode(payload).ok()?;
        let payload = Payload::parse(&json)?;
        let iv = STANDARD.decode(&payload.iv).ok()?;
        let value = STANDARD.decode(&payload.value).ok()?;
        self.keys.iter().enumerate().find_map(|(i, key)| {
            let key = &key.0;
            let plaintext = if payload.tag.is_empty() {
                let iv: [u8; 16] = iv.as_slice().try_into().ok()?;
                let mac = hex_decode(&payload.mac)?;
                let mut check = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
                check.update(payload.iv.as_bytes());
                check.update(payload.value.as_bytes());
                // Constant time, as Laravel's hash_equals.
                check.verify_slice(&mac).ok()?;
                let decryptor = cbc::Decryptor::<aes::Aes256>::new(key.into(), &iv.into());
                decryptor.decrypt_padded_vec_mut::<Pkcs7>(&value).ok()?
            } else {
                let iv: [u8; 12] = iv.as_slice().try_into().ok()?;
                let tag = STANDARD.decode(&payload.tag).ok()?;
                if tag.len() != 16 {
                    return None;
                }
                let mut sealed = value.clone();
                sealed.extend_from_slice(&tag);
                let gcm = aes_gcm::Aes256Gcm::new(key.into());
                gcm.decrypt(&iv.into(), sealed.as_slice()).ok()?
            };
            Some((plaintext, i))
        })
    }

    /// The value `EncryptCookies` gives cookie `name` holding `value`, before percent-encoding.
    pub(crate) fn encrypt_cookie(&self, name: &str, value: &str) -> String {
        let mut plaintext = cookie_prefix(&self.keys[0].0, name);
        plaintext.push_str(value);
        self.encrypt(plaintext.as_bytes())
    }

    /// What `EncryptCookies` reads from cookie `name` (percent-decoded): `None` when it does not
    /// decrypt or its prefix is not the one of this name under the key that decrypted it.
    pub(crate) fn decrypt_cookie(&self, name: &str, wire: &str) -> Option<String> {
        let (plaintext, key) = self.decrypt(wire)?;
        let plaintext = String::from_utf8(plaintext).ok()?;
        let prefix = cookie_prefix(&self.keys[key].0, name);
        plaintext.strip_prefix(prefix.as_str()).map(str::to_owned)
    }
}

/// Lower-case hex HMAC-SHA256 of the base64 IV and value, as `Encrypter::hash`.
fn cbc_mac(key: &[u8; 32], iv: &str, value: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(iv.as_bytes());
    mac.update(value.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// `CookieValuePrefix::create`: hex HMAC-SHA1 of the name and `v2`, then `|`.
fn cookie_prefix(key: &[u8; 32], name: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(name.as_bytes());
    mac.update(b"v2");
    let mut prefix = hex(&mac.finalize().into_bytes());
    prefix.push('|');
    debug_assert_eq!(prefix.len(), PREFIX_LEN);
    prefix
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A fresh session id as Laravel mints one: 40 ASCII letters and digits.
pub(crate) fn new_session_id() -> String {
    const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::with_capacity(SESSION_ID_LEN);
    while id.len() < SESSION_ID_LEN {
        let mut byte = [0u8; 1];
        getrandom::fill(&mut byte).expect("the OS random source failed");
        // 248 is the largest multiple of 62 below 256: no letter is likelier than another.
        if byte[0] < 248 {
            id.push(char::from(ALPHANUMERIC[usize::from(byte[0]) % 62]));
        }
    }
    id
}

/// Whether Laravel accepts `id` as a session id (else it starts a new session).
pub(crate) fn is_session_id(id: &str) -> bool {
    id.len() == SESSION_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const KEY: &str = "base64:7Kp0l2J1x2m0VmQ9mZk3u8c4i0o6R5t1Y2w3E4r5T6Y=";

    fn encrypter(cipher: Cipher) -> Encrypter {
        Encrypter::new(AppKey::parse(KEY, "key").unwrap(), vec![], cipher)
    }

    /// Laravel 8.83's own `Encrypter` and `CookieValuePrefix` (Debian's php-laravel-framework),
    /// through `tests/php/laravel_cookie.php`: `decrypt NAME PAYLOAD` prints the id our cookie
    /// holds, `encrypt NAME ID` prints Laravel's cookie for it.
    fn laravel(cipher: Cipher, args: &[&str]) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/php/laravel_cookie.php");
        let cipher = match cipher {
            Cipher::Aes256Cbc => "AES-256-CBC",
            Cipher::Aes256Gcm => "AES-256-GCM",
        };
        let output = Command::new("php")
            .arg(script)
            .args([KEY, cipher])
            .args(args)
            .output()
            .expect("php (php8.2-cli) is installed");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    #[test]
    fn laravel_reads_our_cookies_and_we_read_laravels() {
        for cipher in [Cipher::Aes256Cbc, Cipher::Aes256Gcm] {
            let ours = encrypter(cipher);
            let id = new_session_id();
            assert!(is_session_id(&id), "{id}");
            let cookie = ours.encrypt_cookie("laravel_session", &id);
            assert_eq!(
                laravel(cipher, &["decrypt", "laravel_session", &cookie]),
                id
            );
            let theirs = laravel(cipher, &["encrypt", "laravel_session", &id]);
            assert_eq!(
                ours.decrypt_cookie("laravel_session", &theirs).as_deref(),
                Some(id.as_str())
            );
            // Bound to its name: the same payload under another cookie name reads as nothing.
            assert_eq!(ours.decrypt_cookie("XSRF-TOKEN", &theirs), None);
        }
    }

    #[test]
    fn a_tampered_payload_or_another_key_reads_as_nothing_and_previous_keys_still_read() {
        for cipher in [Cipher::Aes256Cbc, Cipher::Aes256Gcm] {
            let old = encrypter(cipher);
            let cookie = old.encrypt_cookie("laravel_session", "x");
            let mut json: serde_json::Value =
                serde_json::from_slice(&STANDARD.decode(&cookie).unwrap()).unwrap();
            let value = json["value"].as_str().unwrap().to_owned();
            let flipped = if value.starts_with('A') { "B" } else { "A" };
            json["value"] = serde_json::Value::from(format!("{flipped}{}", &value[1..]));
            let tampered = STANDARD.encode(json.to_string());
            assert_eq!(old.decrypt_cookie("laravel_session", &tampered), None);
            for garbage in ["", "%%%", "bm90IGpzb24=", &STANDARD.encode("{}")] {
                assert_eq!(old.decrypt_cookie("laravel_session", garbage), None);
            }
            let other = AppKey::parse(&"k".repeat(32), "key").unwrap();
            let rotated = Encrypter::new(other.clone(), vec![], cipher);
            assert_eq!(rotated.decrypt_cookie("laravel_session", &cookie), None);
            let previous = AppKey::parse(KEY, "key").unwrap();
            let rotated = Encrypter::new(other, vec![previous], cipher);
            let read = rotated.decrypt_cookie("laravel_session", &cookie);
            assert_eq!(read.as_deref(), Some("x"));
        }
    }

    #[test]
    fn a_malformed_key_cipher_or_serialization_names_the_option() {
        for bad in ["", "base64:!!!", "base64:c2hvcnQ=", "short"] {
            let error = AppKey::parse(bad, "LARAVEL_APP_KEY").unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::Config {
                        option: "LARAVEL_APP_KEY",
                        ..
                    }
                ),
                "{bad}: {error:?}"
            );
        }
        assert_eq!(
            Cipher::parse("aes-256-gcm", "c").unwrap(),
            Cipher::Aes256Gcm
        );
        let error = Cipher::parse("AES-128-CBC", "LARAVEL_CIPHER").unwrap_err();
        assert!(matches!(
            error,
            Error::Config {
                option: "LARAVEL_CIPHER",
                ..
            }
        ));
        assert_eq!(
            Serialization::parse("json", "s").unwrap(),
            Serialization::Json
        );
        let error = Serialization::parse("igbinary", "laravel_serialization").unwrap_err();
        assert!(matches!(
            error,
            Error::Config {
                option: "laravel_serialization",
                ..
            }
        ));
        let key = AppKey::parse(KEY, "key").unwrap();
        assert!(!format!("{key:?}").contains("7Kp0"));
    }

    #[test]
    fn ids_are_what_laravel_accepts() {
        let ids: Vec<String> = (0..100).map(|_| new_session_id()).collect();
        assert!(ids.iter().all(|id| is_session_id(id)));
        assert_ne!(ids[0], ids[1]);
        for bad in ["", "a", &"a".repeat(39), &"a".repeat(41), &"-".repeat(40)] {
            assert!(!is_session_id(bad), "{bad}");
        }
    }
}

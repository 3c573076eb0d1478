//! A foreign session's value as one request sees it: its fields as JSON text for the
//! [`Session`](crate::Session) API, the user it is bound to, and the request's changes applied to
//! it entry by entry, so that what the request did not change is written back as it was.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::express::Record;
#[cfg(feature = "laravel")]
use super::laravel::Serialization;
#[cfg(feature = "laravel")]
use super::php::{self, Php};
use super::php::{Entries, Entry};
use super::{Format, Kind};
use crate::store::{Changes, FLASH_PREFIX, RESERVED_PREFIX};

/// The top-level key where a login binds the user in the php and express formats.
const USER_KEY: &str = "user";

/// A session's value, parsed.
#[derive(Debug, Clone)]
pub(crate) enum Document {
    /// PHP's `php` session serialisation.
    Php(Entries),
    /// Laravel's attributes, serialised as an array and that serialised again as a string.
    #[cfg(feature = "laravel")]
    Laravel(Entries),
    /// Laravel's attributes as JSON (`session.serialization=json`), serialised as a string.
    #[cfg(feature = "laravel")]
    LaravelJson(Map<String, Value>),
    Express(Record),
}

/// The fields of a document, whichever format holds them: PHP's entries or a JSON object.
enum Fields<E, M> {
    Php(E),
    Json(M),
}

impl Format {
    /// The stored value, parsed; `None` when the other framework could not read it either.
    pub(crate) fn parse(&self, raw: &[u8]) -> Option<Document> {
        match self.kind {
            Kind::Php => Entries::parse_session(raw).ok().map(Document::Php),
            #[cfg(feature = "laravel")]
            Kind::Laravel(_, serialization) => {
                let (Php::Str(inner), len) = php::parse_value(raw).ok()? else {
                    return None;
                };
                if len != raw.len() {
                    return None;
                }
                match serialization {
                    Serialization::Php => Entries::parse_array(&inner).ok().map(Document::Laravel),
                    // PHP's json_encode gives `[]` for an empty array.
                    Serialization::Json => match serde_json::from_slice(&inner).ok()? {
                        Value::Object(map) => Some(Document::LaravelJson(map)),
                        Value::Array(list) if list.is_empty() => {
                            Some(Document::LaravelJson(Map::new()))
                        }
                        _ => None,
                    },
                }
            }
            Kind::Express(_) => Record::parse(raw).map(Document::Express),
        }
    }

    /// The value of a session we create.
    pub(crate) fn new_document(&self) -> Document {
        match self.kind {
            Kind::Php => Document::Php(Entries(Vec::new())),
            #[cfg(feature = "laravel")]
            Kind::Laravel(_, Serialization::Php) => Document::Laravel(Entries(Vec::new())),
            #[cfg(feature = "laravel")]
            Kind::Laravel(_, Serialization::Json) => Document::LaravelJson(Map::new()),
            Kind::Express(_) => Document::Express(Record::new()),
        }
    }
}

impl Document {
    fn shape(&self) -> Fields<&Entries, &Map<String, Value>> {
        match self {
            Self::Php(entries) => Fields::Php(entries),
            #[cfg(feature = "laravel")]
            Self::Laravel(entries) => Fields::Php(entries),
            #[cfg(feature = "laravel")]
            Self::LaravelJson(map) => Fields::Json(map),
            Self::Express(record) => Fields::Json(&record.fields),
        }
    }

    fn shape_mut(&mut self) -> Fields<&mut Entries, &mut Map<String, Value>> {
        match self {
            Self::Php(entries) => Fields::Php(entries),
            #[cfg(feature = "laravel")]
            Self::Laravel(entries) => Fields::Php(entries),
            #[cfg(feature = "laravel")]
            Self::LaravelJson(map) => Fields::Json(map),
            Self::Express(record) => Fields::Json(&mut record.fields),
        }
    }

    /// Every entry that maps to JSON, as JSON text; the others are kept but not shown.
    pub(crate) fn fields(&self) -> HashMap<String, String> {
        match self.shape() {
            Fields::Json(map) => map
                .iter()
                .map(|(name, value)| (name.clone(), value.to_string()))
                .collect(),
            Fields::Php(entries) => entries
                .0
                .iter()
                .filter_map(|entry| {
                    let name = std::str::from_utf8(&entry.name).ok()?;
                    Some((name.to_owned(), entry.value.to_json()?.to_string()))
                })
                .collect(),
        }
    }

    /// The value under `name`, as JSON, if it maps.
    pub(crate) fn get(&self, name: &str) -> Option<Value> {
        match self.shape() {
            Fields::Json(map) => map.get(name).cloned(),
            Fields::Php(entries) => entries
                .0
                .iter()
                .find(|entry| entry.name == name.as_bytes())?
                .value
                .to_json(),
        }
    }

    /// The user a login bound the session to: ours or the other app's.
    pub(crate) fn user(&self) -> Option<String> {
        match self.get(self.user_key())? {
            Value::String(user) if !user.is_empty() => Some(user),
            Value::Number(id) => Some(id.to_string()),
            _ => None,
        }
    }

    fn user_key(&self) -> &'static str {
        match self {
            #[cfg(feature = "laravel")]
            Self::Laravel(_) | Self::LaravelJson(_) => super::laravel::WEB_GUARD_USER_KEY,
            Self::Php(_) | Self::Express(_) => USER_KEY,
        }
    }

    /// Whether a login binds a user id that is all digits as an integer, as Laravel's guard does.
    fn binds_integer_ids(&self) -> bool {
        match self {
            #[cfg(feature = "laravel")]
            Self::Laravel(_) | Self::LaravelJson(_) => true,
            Self::Php(_) | Self::Express(_) => false,
        }
    }

    /// Whether we may write this value: not when it holds a PHP reference, which our changes
    /// could make point elsewhere.
    pub(crate) fn is_writable(&self) -> bool {
        match self.shape() {
            Fields::Php(entries) => !entries.has_references(),
            Fields::Json(_) => true,
        }
    }

    /// A request's changes, applied: a clear keeps only the user, each changed field is set or
    /// removed, and a login binds the user as the framework does (Laravel's web guard holds an
    /// integer id when the name is all digits). The crate's own metadata (device details) has no
    /// place in another framework's session and is left out; flash values are kept.
    pub(crate) fn apply(&mut self, changes: &Changes) {
        let user_key = self.user_key();
        if changes.clear {
            self.retain(user_key);
        }
        for (name, json) in &changes.fields {
            if name.starts_with(RESERVED_PREFIX) && !name.starts_with(FLASH_PREFIX) {
                continue;
            }
            match json {
                // Our own JSON text, from serde_json: it parses.
                Some(json) => self.set(name, serde_json::from_str(json).unwrap_or(Value::Null)),
                None => self.remove(name),
            }
        }
        if let Some(user) = &changes.user {
            let value = match user.parse::<i64>() {
                Ok(id) if self.binds_integer_ids() && user.bytes().all(|b| b.is_ascii_digit()) => {
                    Value::from(id)
                }
                _ => Value::from(user.as_str()),
            };
            self.set(user_key, value);
        }
    }

    /// Sets a field in place, where it was, or adds it at the end.
    pub(crate) fn set(&mut self, name: &str, value: Value) {
        match self.shape_mut() {
            Fields::Json(map) => {
                map.insert(name.to_owned(), value);
            }
            Fields::Php(entries) => {
                let entry = Entry::from_json(name, &value);
                match entries.0.iter_mut().find(|e| e.name == name.as_bytes()) {
                    Some(existing) => *existing = entry,
                    None => entries.0.push(entry),
                }
            }
        }
    }

    fn remove(&mut self, name: &str) {
        match self.shape_mut() {
            Fields::Json(map) => {
                map.remove(name);
            }
            Fields::Php(entries) => entries.0.retain(|entry| entry.name != name.as_bytes()),
        }
    }

    fn retain(&mut self, keep: &str) {
        match self.shape_mut() {
            Fields::Json(map) => map.retain(|name, _| name == keep),
            Fields::Php(entries) => entries.0.retain(|entry| entry.name == keep.as_bytes()),
        }
    }

    /// The value to store.
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Self::Php(entries) => entries.to_session(),
            #[cfg(feature = "laravel")]
            Self::Laravel(entries) => {
                let mut out = Vec::new();
                php::write_str(&entries.to_array(), &mut out);
                out
            }
            #[cfg(feature = "laravel")]
            Self::LaravelJson(map) => {
                let mut out = Vec::new();
                php::write_str(Value::Object(map.clone()).to_string().as_bytes(), &mut out);
                out
            }
            Self::Express(record) => record.to_json().into_bytes(),
        }
    }

    /// The TTL a write gives this value, in milliseconds: the idle timeout, or for express a
    /// cookie's `expires` when it has one (as connect-redis does). Zero or less: expired.
    pub(crate) fn ttl_ms(&self, idle_ms: i64) -> i64 {
        match self {
            Self::Express(record) if !self.rolls() => record
                .ttl_secs(time::OffsetDateTime::now_utc(), 0)
                .saturating_mul(1000),
            _ => idle_ms,
        }
    }

    /// Whether a read may roll the TTL: not for an express session whose cookie expires at a
    /// fixed time, which its TTL follows.
    pub(crate) fn rolls(&self) -> bool {
        match self {
            Self::Express(record) => record.cookie.get("expires").is_none_or(Value::is_null),
            _ => true,
        }
    }
}

//! tower-sessions' Redis records (INTEROP.md §4), read once so that a tower-sessions user's
//! session continues in our layout and the migration logs nobody out: the key is the cookie's id
//! (22 characters of unpadded URL-safe base64 of 16 bytes) behind the store's prefix, the value a
//! MessagePack array of the id, the data (JSON values by name) and the expiry date.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::IgnoredAny;
use serde_json::Value;
use time::OffsetDateTime;

/// A session as tower-sessions stored it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub(crate) data: HashMap<String, Value>,
    pub(crate) expires_at: OffsetDateTime,
}

/// Whether `value` is a tower-sessions id (as its `Id::from_str` accepts): 22 characters that
/// decode to 16 bytes. Its text is also the record's key, after the store's prefix.
pub(crate) fn is_session_id(value: &str) -> bool {
    value.len() == 22
        && URL_SAFE_NO_PAD
            .decode(value)
            .is_ok_and(|bytes| bytes.len() == 16)
}

/// A record as tower-sessions' Redis store writes it (`rmp_serde::to_vec`); `None` when the bytes
/// are not one.
pub(crate) fn parse_record(bytes: &[u8]) -> Option<Record> {
    // time's compact form of an `OffsetDateTime`: year, day of the year, hour, minute, second,
    // nanosecond, then the offset's hours, minutes and seconds.
    type Expiry = (i32, u16, u8, u8, u8, u32, i8, i8, i8);
    let (_id, data, expiry): (IgnoredAny, HashMap<String, Value>, Expiry) =
        rmp_serde::from_slice(bytes).ok()?;
    let (year, ordinal, hour, minute, second, nanosecond, oh, om, os) = expiry;
    let date = time::Date::from_ordinal_date(year, ordinal).ok()?;
    let time = time::Time::from_hms_nano(hour, minute, second, nanosecond).ok()?;
    let offset = time::UtcOffset::from_hms(oh, om, os).ok()?;
    let expires_at = time::PrimitiveDateTime::new(date, time).assume_offset(offset);
    Some(Record { data, expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::prelude::{Builder, ClientLike, Config, KeysInterface};
    use testkit::RedisServer;
    use tower_sessions_core::session::{Id, Record as Theirs};
    use tower_sessions_core::SessionStore;

    /// tower-sessions' own Redis store writes a session to a real server; we read its bytes.
    #[tokio::test]
    async fn a_record_tower_sessions_wrote_reads_with_its_data_and_expiry() {
        let server = RedisServer::start();
        let pool = Builder::from_config(Config::from_url(&server.url()).unwrap())
            .build_pool(1)
            .unwrap();
        pool.init().await.unwrap();
        let store = tower_sessions_redis_store::RedisStore::new(pool.clone());
        let expiry_date = OffsetDateTime::now_utc() + time::Duration::minutes(30);
        let mut data = HashMap::new();
        data.insert("user".to_owned(), Value::from("alice"));
        data.insert(
            "cart".to_owned(),
            serde_json::json!({"items": [1, 2], "note": "é"}),
        );
        let mut record = Theirs {
            id: Id::default(),
            data: data.clone(),
            expiry_date,
        };
        store.create(&mut record).await.unwrap();
        let id = record.id.to_string();
        assert!(is_session_id(&id), "{id}");
        let bytes: Vec<u8> = pool.get(&id).await.unwrap();
        let read = parse_record(&bytes).unwrap();
        assert_eq!(read.data, data);
        // tower-sessions keeps the expiry to the nanosecond, in UTC.
        assert_eq!(read.expires_at, expiry_date);
    }

    #[test]
    fn other_ids_and_values_are_refused() {
        for bad in [
            "",
            "short",
            &"A".repeat(23),
            "!!!!!!!!!!!!!!!!!!!!!!",
            &"A".repeat(21),
        ] {
            assert!(!is_session_id(bad), "{bad}");
        }
        for bad in [
            &b""[..],
            b"\x93",
            b"\xc0",
            b"not msgpack",
            &[0x93, 0xc0, 0x80, 0x90],
        ] {
            assert_eq!(parse_record(bad), None, "{bad:?}");
        }
    }
}

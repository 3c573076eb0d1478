//! A foreign session's commands (DESIGN §11): its whole value read with its TTL, and written by
//! compare-and-set (`lua/foreign_read.lua`, `lua/foreign_write.lua`). What a value means is the
//! format's business (`store/format/`); the steps built from these are `store/foreign.rs`'s.

use std::future::Future;

use bytes::Bytes;
use fred::types::Value;

use super::scripts::{unexpected_reply, ForeignReadArgs, ForeignWriteArgs};
use super::RedisStore;
use crate::error::Error;

/// One write of a foreign session's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ForeignWrite<'a> {
    /// Only if the key is free.
    Create { value: &'a [u8], ttl_ms: i64 },
    /// Only if the key still holds `expected`, and the other framework's lock is not held.
    Replace {
        expected: &'a [u8],
        value: &'a [u8],
        ttl_ms: i64,
    },
    /// Delete, only if the key still holds `expected`, and the lock is not held.
    Delete { expected: &'a [u8] },
    /// Delete, whatever the key holds.
    Take,
    /// Set the TTL only.
    Expire { ttl_ms: i64 },
}

/// What a write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ForeignWritten {
    /// Done; for [`ForeignWrite::Take`], with the value deleted.
    Done(Option<Vec<u8>>),
    /// The key holds this other value now; nothing was written.
    Changed(Vec<u8>),
    /// No such key; nothing was written.
    Gone,
    /// The key is in use (a create); nothing was written.
    Taken,
    /// The other framework holds its lock on the session; nothing was written.
    Locked,
}

impl RedisStore {
    /// The value under `key` and its TTL in ms (negative: none), or `None`.
    pub(crate) fn foreign_read(
        &self,
        key: String,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, i64)>, Error>> + Send + '_ {
        let args = ForeignReadArgs {}.into_values();
        let call = self.run(ForeignReadArgs::script(), vec![key], args);
        async move {
            match call.await? {
                Value::Null => Ok(None),
                Value::Array(reply) => match reply.as_slice() {
                    [value, Value::Integer(ttl)] => {
                        let value = value
                            .as_bytes()
                            .ok_or_else(|| unexpected_reply("foreign_read"))?;
                        Ok(Some((value.to_vec(), *ttl)))
                    }
                    _ => Err(unexpected_reply("foreign_read")),
                },
                _ => Err(unexpected_reply("foreign_read")),
            }
        }
    }

    /// Runs `write` on `key`; `lock` is the other framework's lock key, checked only where it
    /// shares a server with the session (not on a cluster, where it sits on another slot).
    pub(crate) fn foreign_write(
        &self,
        key: String,
        lock: Option<String>,
        write: ForeignWrite<'_>,
    ) -> impl Future<Output = Result<ForeignWritten, Error>> + Send + '_ {
        let (op, expected, value, ttl_ms) = match write {
            ForeignWrite::Create { value, ttl_ms } => ("create", &[][..], value, ttl_ms),
            ForeignWrite::Replace {
                expected,
                value,
                ttl_ms,
            } => ("replace", expected, value, ttl_ms),
            ForeignWrite::Delete { expected } => ("delete", expected, &[][..], 0),
            ForeignWrite::Take => ("take", &[][..], &[][..], 0),
            ForeignWrite::Expire { ttl_ms } => ("expire", &[][..], &[][..], ttl_ms),
        };
        let args = ForeignWriteArgs {
            op: Value::from_static_str(op),
            expected: Value::Bytes(Bytes::copy_from_slice(expected)),
            value: Value::Bytes(Bytes::copy_from_slice(value)),
            ttl: Value::Integer(ttl_ms.max(1)),
        };
        let mut keys = vec![key];
        keys.extend(lock.filter(|_| self.inline_index()));
        let call = self.run(ForeignWriteArgs::script(), keys, args.into_values());
        async move {
            let reply = call.await?;
            let Value::Array(reply) = reply else {
                return Err(unexpected_reply("foreign_write"));
            };
            let bytes = |value: &Value| value.as_bytes().map(<[u8]>::to_vec);
            let status = reply.first().and_then(Value::as_str);
            Ok(match (status.as_deref(), reply.get(1)) {
                (Some("ok"), None) => ForeignWritten::Done(None),
                (Some("ok"), Some(old)) => ForeignWritten::Done(bytes(old)),
                (Some("changed"), Some(now)) => ForeignWritten::Changed(
                    bytes(now).ok_or_else(|| unexpected_reply("foreign_write"))?,
                ),
                (Some("gone"), _) => ForeignWritten::Gone,
                (Some("taken"), _) => ForeignWritten::Taken,
                (Some("locked"), _) => ForeignWritten::Locked,
                _ => return Err(unexpected_reply("foreign_write")),
            })
        }
    }
}

//! A session's lock in Redis: `lock.lua`, one single-key script on the session's own slot for each
//! step (take, renew, release).

use fred::types::Value;

use super::scripts;
use super::RedisStore;
use crate::error::Error;
use crate::id::KeyId;
use crate::store::{LockOp, Locked};

impl RedisStore {
    pub(crate) async fn lock_session(&self, key: &KeyId, op: LockOp) -> Result<Locked, Error> {
        let (name, token, ttl) = match op {
            LockOp::Take { ttl_ms } => ("take", None, Some(ttl_ms)),
            LockOp::Renew { token, ttl_ms } => ("renew", Some(token), Some(ttl_ms)),
            LockOp::Release { token } => ("release", Some(token), None),
        };
        let args = scripts::LockArgs {
            op: Value::from_static_str(name),
            token: token.map_or_else(
                || Value::from_static_str(""),
                |t| Value::from(t.to_string()),
            ),
            ttl: ttl.map_or_else(|| Value::from_static_str(""), Value::from),
        };
        let redis_key = self.session_key(key);
        // The lock's fields are no part of what the near-cache holds, but writing them ends this
        // connection's tracking of the key: the cached copy is forgotten rather than left
        // untracked.
        let mut ended = self.near.ended();
        ended.push(&redis_key);
        let reply = self
            .run(
                scripts::LockArgs::script(),
                vec![redis_key],
                args.into_values(),
            )
            .await;
        self.near.end(ended);
        scripts::lock_reply(reply?)
    }
}

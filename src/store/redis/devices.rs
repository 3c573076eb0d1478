//! A user's device list: their live sessions, one of them ended by its handle, or all but the
//! asking one. On one server each is one script that reads or changes the index and the sessions
//! in one step; on a cluster, where the sessions live on other slots, the index is read first and
//! each session reached with its own command, and what a racing cycle carries to a new id is
//! refused when that id is indexed: an ended handle (`end_handle.lua`), or for logging out the
//! others the revocation epoch, as for a logout-everywhere (see `cluster.rs`).

use fred::interfaces::{ClientLike, HashesInterface, SortedSetsInterface};
use fred::types::Value;

use super::conn::write_options;
use super::near_cache::Ended;
use super::scripts;
use super::RedisStore;
use crate::config::Limits;
use crate::error::Error;
use crate::id::KeyId;
use crate::store::layout::{CREATED_FIELD, HANDLE_FIELD, IP_FIELD, SEEN_FIELD, USER_AGENT_FIELD};
use crate::store::ttl::now_ms;
use crate::store::Listed;

impl RedisStore {
    /// The user's live sessions: one round trip on one server.
    pub(crate) async fn devices(&self, user: &str) -> Result<Vec<Listed>, Error> {
        if self.inline_index() {
            let args = scripts::DevicesArgs {
                prefix: self.prefix(),
            };
            let script = scripts::DevicesArgs::script();
            let reply = self.run(script, vec![self.index_key(user)], args.into_values());
            return scripts::devices_reply(reply.await?);
        }
        let live = format!("({}", now_ms());
        let index = self.index_key(user);
        let ids: Vec<String> = self
            .bounded(
                self.client()
                    .zrangebyscore(index, live, "(+inf", false, None),
            )
            .await?;
        self.read_devices(ids).await
    }

    /// The device fields of the sessions `ids` on a cluster, those still alive: one pipeline, which
    /// fred sends each read of to its session's master.
    async fn read_devices(&self, ids: Vec<String>) -> Result<Vec<Listed>, Error> {
        let pipeline = self.client().pipeline();
        let fields = [
            CREATED_FIELD,
            SEEN_FIELD,
            USER_AGENT_FIELD,
            IP_FIELD,
            HANDLE_FIELD,
        ];
        let replies: Vec<Value> = self
            .bounded(async {
                for id in &ids {
                    let () = pipeline.hmget(self.id_key(id), fields.to_vec()).await?;
                }
                pipeline.all().await
            })
            .await?;
        let mut flat = Vec::with_capacity(ids.len() * 6);
        for (id, reply) in ids.into_iter().zip(replies) {
            flat.push(Value::from(id));
            match reply {
                Value::Array(values) => flat.extend(values),
                _ => flat.extend(std::iter::repeat_n(Value::Null, fields.len())),
            }
        }
        scripts::devices_reply(Value::Array(flat))
    }

    /// Ends the user's sessions that carry `handle`; returns their key ids (none: the user has no
    /// such session). On a cluster the handle is first marked ended in the user's index, so that
    /// a cycle of its session racing this one is refused when its new id is indexed (see
    /// `end_handle.lua`), then the listed sessions that carry it are deleted.
    pub(crate) async fn end_device(
        &self,
        user: &str,
        handle: &str,
        limits: &Limits,
    ) -> Result<Vec<String>, Error> {
        let mut ended = self.near.ended();
        let result = self.end_device_now(user, handle, limits, &mut ended).await;
        self.near.end(ended);
        result
    }

    async fn end_device_now(
        &self,
        user: &str,
        handle: &str,
        limits: &Limits,
        ended: &mut Ended,
    ) -> Result<Vec<String>, Error> {
        if self.inline_index() {
            let args = scripts::EndDeviceArgs {
                prefix: self.prefix(),
                handle: Value::from(handle),
            };
            let script = scripts::EndDeviceArgs::script();
            let reply = self.run(script, vec![self.index_key(user)], args.into_values());
            let ids = scripts::ids_reply(reply.await?, "end_device")?;
            for id in &ids {
                ended.push(&self.id_key(id));
            }
            return Ok(ids);
        }
        let index = self.index_key(user);
        let args = scripts::EndHandleArgs {
            handle: Value::from(handle),
            ttl: Value::from(limits.idle_ms()),
        };
        let script = scripts::EndHandleArgs::script();
        let reply = self.run(script, vec![index.clone()], args.into_values());
        let listed = scripts::ids_reply(reply.await?, "end_handle")?;
        let ids: Vec<String> = self
            .read_devices(listed)
            .await?
            .into_iter()
            .filter(|listed| listed.handle == handle)
            .map(|listed| listed.key_id)
            .collect();
        self.delete_sessions(&ids, ended).await?;
        if !ids.is_empty() {
            let client = self.client().with_options(&write_options());
            let _: () = self.bounded(client.zrem(index, ids.clone())).await?;
        }
        Ok(ids)
    }

    /// Ends every session of the user but `current`.
    pub(crate) async fn end_other_devices(
        &self,
        user: &str,
        current: &KeyId,
        limits: &Limits,
    ) -> Result<(), Error> {
        let mut ended = self.near.ended();
        let result = match self.inline_index() {
            true => {
                let args = scripts::EndOthersArgs {
                    prefix: self.prefix(),
                    keep: Value::from(current.as_str()),
                };
                let script = scripts::EndOthersArgs::script();
                let reply = self.run(script, vec![self.index_key(user)], args.into_values());
                reply
                    .await
                    .and_then(|reply| scripts::ids_reply(reply, "end_others"))
                    .map(|ids| {
                        for id in &ids {
                            ended.push(&self.id_key(id));
                        }
                    })
            }
            false => self.revoke(user, current, true, limits, &mut ended).await,
        };
        self.near.end(ended);
        result
    }
}

//! The store's connections and the three ways it talks over them: a script by its hash, a plain
//! `HGETALL`, and a pipeline of `DEL`s, each bounded by the command timeout.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use fred::clients::{Client, Pool};
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::{ClientLike, KeysInterface, LuaInterface};
use fred::types::config::Options;
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, Value};

use super::scripts::{self, unexpected_reply};
use super::RedisStore;
use crate::error::Error;
use crate::store::layout::StoredHash;

/// What the store sends its commands over: a fred client or pool the application may already have.
#[derive(Clone)]
pub(super) enum Connection {
    Client(Client),
    Pool(Pool),
}

impl Connection {
    /// Every client, for setting each of them up.
    pub(super) fn clients(&self) -> Vec<Client> {
        match self {
            Self::Client(client) => vec![client.clone()],
            Self::Pool(pool) => pool.clients().to_vec(),
        }
    }

    fn connected(&self) -> bool {
        match self {
            Self::Client(client) => client.is_connected(),
            Self::Pool(pool) => pool.clients().iter().all(ClientLike::is_connected),
        }
    }

    /// The next connection attempt's result, for every client.
    fn wait_for_connect(&self) -> Pin<Box<dyn Future<Output = Result<(), FredError>> + Send>> {
        match self {
            Self::Client(client) => {
                let client = client.clone();
                Box::pin(async move { client.wait_for_connect().await })
            }
            Self::Pool(pool) => {
                let pool = pool.clone();
                Box::pin(async move { pool.wait_for_connect().await })
            }
        }
    }
}

impl RedisStore {
    pub(super) fn client(&self) -> &Client {
        match &self.connection {
            Connection::Client(client) => client,
            Connection::Pool(pool) => pool.next(),
        }
    }

    /// The client for commands on `key`. With the near-cache, always the same one: a key that one
    /// connection read and another wrote would lose its tracking (NOLOOP only spares the writer's
    /// own reads).
    pub(super) fn client_for(&self, key: &str) -> &Client {
        match (&self.connection, self.near.is_on()) {
            (Connection::Pool(pool), true) => {
                let clients = pool.clients();
                let hash = key
                    .bytes()
                    .fold(0_usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
                &clients[hash % clients.len()]
            }
            _ => self.client(),
        }
    }

    /// On a cluster, a user's index is on another slot than the user's sessions, so scripts cannot
    /// update it in the same call: the store does it with separate single-key calls instead.
    pub(super) fn inline_index(&self) -> bool {
        !self.client().is_clustered()
    }

    /// Runs a write script by its hash, sending its text only when the server does not know it yet.
    /// A plain function, like [`Self::hgetall`], so that fred's future is boxed before any caller's
    /// future could hold it.
    ///
    /// A load of the scripts under way (see `loader.rs`) is waited for first; a `NOSCRIPT` asks
    /// for another, since the server has lost them all.
    pub(super) fn run(
        &self,
        script: &'static Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> impl Future<Output = Result<Value, Error>> + Send + '_ {
        self.start_loading_scripts();
        let loader = &self.loader;
        let client = self.client_for(&keys[0]).with_options(&write_options());
        self.bounded(async move {
            loader.settled().await;
            match client
                .evalsha(script.sha1().clone(), keys.clone(), args.clone())
                .await
            {
                Err(error) if error.details().starts_with("NOSCRIPT") => {
                    loader.want();
                    let lua = script.lua().cloned().unwrap_or_default();
                    client.eval(lua, keys, args).await
                }
                result => result,
            }
        })
    }

    /// Keeps the scripts loaded from now on (once per store; needs a Tokio runtime, so a store
    /// built outside one starts at its first call).
    pub(super) fn start_loading_scripts(&self) {
        self.loader.start(|| self.connection.clients());
    }

    /// A session hash, whole. Sent as a custom command: fred's own `hgetall` first builds a map of
    /// its own, hashing every field, only for the fields to be hashed again into ours.
    pub(super) fn hgetall<'a>(
        &'a self,
        key: &'a str,
    ) -> impl Future<Output = Result<HashMap<String, String>, Error>> + Send + 'a {
        let call = self.hgetall_reply(key);
        async move {
            let mut hash = HashMap::new();
            each_pair(call.await?, |field, value| {
                hash.insert(field.to_owned(), value.to_owned());
            })?;
            Ok(hash)
        }
    }

    /// A session read: `HGETALL` (with the near-cache, `tracked_read.lua`), split as it is decoded,
    /// metadata the read does not need left out.
    pub(super) async fn read_session(&self, key: &str) -> Result<StoredHash, Error> {
        let reply = match self.near.is_on() {
            true => {
                let script = scripts::TrackedReadArgs::script();
                let args = scripts::TrackedReadArgs {}.into_values();
                self.run(script, vec![key.to_owned()], args).await?
            }
            false => self.hgetall_reply(key).await?,
        };
        let fields = match &reply {
            Value::Array(flat) => flat.len() / 2,
            _ => 0,
        };
        let mut stored = StoredHash::with_capacity(fields);
        each_pair(reply, |field, value| stored.add(field, value))?;
        Ok(stored)
    }

    fn hgetall_reply<'a>(
        &'a self,
        key: &'a str,
    ) -> impl Future<Output = Result<Value, Error>> + Send + 'a {
        let command = CustomCommand::new_static("HGETALL", ClusterHash::FirstKey, false);
        self.bounded(self.client_for(key).custom::<Value, _>(command, vec![key]))
    }

    /// One pipeline of single-key `DEL`s (a cluster keeps the keys on different slots), queued
    /// inside the bounded call so that fred's futures are boxed with it.
    pub(super) fn delete_keys(
        &self,
        keys: Vec<String>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        let pipeline = self.client().pipeline();
        self.bounded(async move {
            for key in keys {
                let () = pipeline.del(key).await?;
            }
            pipeline.all::<Value>().await.map(drop)
        })
    }

    /// Bounds a store call by the command timeout even where fred would wait longer, e.g. on a
    /// client whose connection task has ended: a request must get its 503, never hang.
    ///
    /// The call is boxed here, once: fred's command futures run to kilobytes, and held inline they
    /// would be copied through every future that awaits them, on every request. Build the call in
    /// a plain function, as [`Self::run`] does: a future built inside an `async fn` keeps its room
    /// in that function's future even after it has been moved here.
    ///
    /// A call made while the store's connections are still being made (a fresh instance, a
    /// reconnect) first waits for them, within the same timeout, rather than failing at once.
    pub(super) fn bounded<'a, T: 'a>(
        &self,
        call: impl Future<Output = Result<T, FredError>> + Send + 'a,
    ) -> impl Future<Output = Result<T, Error>> + Send + 'a {
        let call = Box::pin(call);
        let connecting = (!self.connection.connected()).then(|| self.connection.wait_for_connect());
        let call = tokio::time::timeout(self.command_timeout, async move {
            if let Some(connecting) = connecting {
                connecting.await?;
            }
            call.await
        });
        async move {
            match call.await {
                Ok(result) => result.map_err(Error::Store),
                Err(_) => Err(Error::Store(FredError::new(
                    ErrorKind::Timeout,
                    "session store timed out",
                ))),
            }
        }
    }
}

/// Each field and value of an `HGETALL` reply, a flat field/value array (RESP2) or a map (RESP3),
/// as text borrowed from the reply.
fn each_pair(reply: Value, mut add: impl FnMut(&str, &str)) -> Result<(), Error> {
    let not_text = || {
        Error::Store(FredError::new(
            ErrorKind::Parse,
            "a session field is not UTF-8 text",
        ))
    };
    match reply {
        Value::Array(flat) => {
            for pair in flat.chunks_exact(2) {
                match (pair[0].as_str(), pair[1].as_str()) {
                    (Some(field), Some(value)) => add(&field, &value),
                    _ => return Err(not_text()),
                }
            }
            Ok(())
        }
        Value::Map(map) => {
            for (field, value) in map.inner() {
                match (field.as_str(), value.as_str()) {
                    (Some(field), Some(value)) => add(field, &value),
                    _ => return Err(not_text()),
                }
            }
            Ok(())
        }
        Value::Null => Ok(()),
        _ => Err(unexpected_reply("HGETALL")),
    }
}

/// A write is sent once: replaying it after a dropped connection could report a cycled or created
/// session as gone or taken. The caller answers 503 instead. (The timeout is `bounded`'s.)
pub(super) fn write_options() -> Options {
    Options {
        max_attempts: Some(1),
        ..Options::default()
    }
}

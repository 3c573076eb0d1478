//! The Lua scripts: each one's named arguments, as Rust sends them, and a decoder of its reply.
//!
//! A script reads its arguments as `arg.<name>` from a table that a prelude builds out of the same
//! list of names, so Rust and Lua cannot disagree on their order, and a unit test checks that every
//! `arg.<name>` a script (or a helper of `lib.lua` it calls) reads is one that Rust sends. The
//! script's own name goes first in ARGV, so `MONITOR` and `SLOWLOG` show which script ran;
//! arguments beyond the named ones (field lists) start at `ARGV[first_extra]`.

use std::fmt::Write as _;

use fred::error::{Error as FredError, ErrorKind};
use fred::types::scripts::Script;
use fred::types::Value;

use crate::error::Error;
use crate::store::layout::METADATA;
use crate::store::Listed;
use crate::store::Locked;

macro_rules! scripts {
    ($($(#[$doc:meta])* $name:ident = $script:literal { $($field:ident),* $(,)? })*) => {$(
        $(#[$doc])*
        pub(super) struct $name {
            $(pub(super) $field: Value,)*
        }

        impl $name {
            const SCRIPT: &'static str = $script;
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];
            const BODY: &'static str = include_str!(concat!("lua/", $script, ".lua"));

            /// The script, built once.
            pub(super) fn script() -> &'static Script {
                static SCRIPT: std::sync::LazyLock<Script> =
                    std::sync::LazyLock::new(|| build($name::SCRIPT, $name::NAMES, $name::BODY));
                &SCRIPT
            }

            /// The script's ARGV: its name, then the named arguments in order.
            pub(super) fn into_values(self) -> Vec<Value> {
                vec![Value::from_static_str(Self::SCRIPT), $(self.$field),*]
            }
        }
    )*

        /// Every script, for loading them all onto a server before a request needs one.
        pub(super) fn all() -> Vec<&'static Script> {
            vec![$($name::script()),*]
        }

        #[cfg(test)]
        const CATALOGUE: &[(&str, &[&str], &str)] = &[$(($script, $name::NAMES, $name::BODY)),*];
    };
}

scripts! {
    /// `fast_update.lua`: the common write, user fields of a session as read. Extra: as for
    /// `update.lua`.
    FastUpdateArgs = "fast_update" { delta, track, fence, sets }
    /// `touch.lua`: roll a session's idle TTL.
    TouchArgs = "touch" { idle, prefix, key_id, inline_index, track }
    /// `update.lua`: a request's changes to a live session. Extra: `sets` field/value pairs, then
    /// the removed fields.
    UpdateArgs = "update" {
        idle, max_bytes, prefix, key_id, clear, inline_index, touch_below, track, fence, sets,
    }
    /// `create.lua`: a session under a fresh id, new or moved. Extra: as for `update.lua`.
    CreateArgs = "create" {
        mode, idle, absolute, max_bytes, prefix, key_id, source_id, clear, user, inline_index,
        max_per_user, track, sets,
    }
    /// `incr.lua`: add to an integer field of a live session.
    IncrArgs = "incr" {
        field, by, idle, max_bytes, prefix, key_id, inline_index, touch_below, track,
    }
    /// `destroy.lua`: delete a session, returning its owner.
    DestroyArgs = "destroy" { prefix, key_id, inline_index }
    /// `take_if.lua`: the old session of a cycle on a cluster, if unchanged.
    TakeIfArgs = "take_if" { version }
    /// `tracked_read.lua`: the near-cache's read, which leaves a missing key untracked.
    TrackedReadArgs = "tracked_read" {}
    /// `destroy_user.lua`: every session of a user, at once (one server).
    DestroyUserArgs = "destroy_user" { prefix }
    /// `index.lua`: a user's index on a cluster.
    IndexArgs = "index" { remove, add, admit, epoch, handle, ttl, slack, cap }
    /// `revoke.lua`: bump a user's revocation epoch and list the user's sessions (cluster).
    RevokeArgs = "revoke" { ttl }
    /// `end_handle.lua`: mark a device handle ended and list the user's sessions (cluster).
    EndHandleArgs = "end_handle" { handle, ttl }
    /// `stamp.lua`: record the user's epoch in a session just logged in (cluster).
    StampArgs = "stamp" { epoch }
    /// `devices.lua`: a user's live sessions for the device list (one server).
    DevicesArgs = "devices" { prefix }
    /// `end_device.lua`: the user's sessions that carry a handle, ended (one server).
    EndDeviceArgs = "end_device" { prefix, handle }
    /// `end_others.lua`: every session of the user but the asking one, ended (one server).
    EndOthersArgs = "end_others" { prefix, keep }
    /// `lock.lua`: take, renew or release a session's lock.
    LockArgs = "lock" { op, token, ttl }
    /// `foreign_read.lua`: a foreign session's value and TTL.
    ForeignReadArgs = "foreign_read" {}
    /// `foreign_write.lua`: a foreign session's compare-and-set.
    ForeignWriteArgs = "foreign_write" { op, expected, value, ttl }
}

const LIB: &str = include_str!("lua/lib.lua");

/// Scripts that call none of `lib.lua`'s helpers and run without them: defining every helper on
/// each call is a good part of what a small script costs Redis.
const WITHOUT_LIB: &[&str] = &[
    "fast_update",
    "foreign_read",
    "foreign_write",
    "stamp",
    "take_if",
    "tracked_read",
];

/// A script from its file, behind a prelude that gives it the metadata field names (`field.user`,
/// …) and its named arguments (`arg.<name>`), then the helpers of `lib.lua` unless it is one of
/// [`WITHOUT_LIB`].
fn build(script: &str, args: &[&str], body: &str) -> Script {
    let mut lua = String::from("local field = {");
    for (name, value) in METADATA {
        let _ = write!(lua, " {name} = '{value}',");
    }
    // ARGV[1] is the script's name.
    lua.push_str(" }\nlocal arg = {");
    for (i, name) in args.iter().enumerate() {
        let _ = write!(lua, " {name} = ARGV[{}],", i + 2);
    }
    let _ = writeln!(lua, " }}\nlocal first_extra = {}", args.len() + 2);
    if !WITHOUT_LIB.contains(&script) {
        lua.push_str(LIB);
    }
    lua.push_str(body);
    Script::from_lua(lua)
}

/// A write script's `'ok'`: what the session holds now and who owns it.
#[derive(Debug)]
pub(super) struct Wrote {
    pub(super) ttl_ms: i64,
    /// When the TTL runs out, unix ms on Redis's clock.
    pub(super) expires_at: i64,
    pub(super) version: u64,
    pub(super) size: usize,
    /// The TTL was rolled, so the owner's index entry must follow it.
    pub(super) rolled: bool,
    /// The owner before the write, and after it.
    pub(super) previous: Option<String>,
    pub(super) owner: Option<String>,
    /// Sessions a login's cap evicted, already deleted by the script.
    pub(super) evicted: Vec<String>,
}

/// The reply of `update.lua` or `create.lua`.
#[derive(Debug)]
pub(super) enum WriteReply {
    Wrote(Wrote),
    Gone,
    Collision,
    TooLarge,
    /// The save's fencing token is no longer the session's (`update.lua`).
    Fenced,
}

/// The reply of `incr.lua`.
#[derive(Debug)]
pub(super) enum IncrReply {
    To {
        value: i64,
        ttl_ms: i64,
        owner: Option<String>,
    },
    Gone,
    NotInteger(String),
    TooLarge,
}

/// The reply of `take_if.lua`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Taken {
    Deleted,
    Gone,
    Changed,
}

/// `fast_update.lua`: `{ version, size }` (the size nil when unchanged), or nil when the session is
/// gone.
pub(super) fn fast_update_reply(reply: Value) -> Result<Option<(u64, Option<usize>)>, Error> {
    let Value::Array(pair) = reply else {
        return match reply {
            Value::Null => Ok(None),
            _ => Err(unexpected_reply("fast_update")),
        };
    };
    match pair.as_slice() {
        [Value::Integer(version), size] => {
            let size = match size {
                Value::Null => None,
                Value::Integer(size) => Some(usize::try_from(*size).unwrap_or(0)),
                _ => return Err(unexpected_reply("fast_update")),
            };
            Ok(Some((u64::try_from(*version).unwrap_or(0), size)))
        }
        _ => Err(unexpected_reply("fast_update")),
    }
}

/// `update.lua`: `{ 'ok', ttl, version, size, rolled, owner, expires at }`.
pub(super) fn update_reply(reply: Value) -> Result<WriteReply, Error> {
    let mut reply = Reply::new(reply, "update")?;
    Ok(match reply.status()?.as_str() {
        "ok" => {
            let (ttl_ms, version, size) = (reply.int()?, reply.int()?, reply.int()?);
            let rolled = reply.text()?.as_deref() == Some("1");
            let owner = reply.text()?;
            WriteReply::Wrote(Wrote {
                ttl_ms,
                expires_at: reply.int()?,
                version: u64::try_from(version).unwrap_or(0),
                size: usize::try_from(size).unwrap_or(0),
                rolled,
                previous: owner.clone(),
                owner,
                evicted: Vec::new(),
            })
        }
        other => reply.refusal(other)?,
    })
}

/// `create.lua`: `{ 'ok', ttl, version, size, expires at, previous owner, owner, evicted… }`.
pub(super) fn create_reply(reply: Value) -> Result<WriteReply, Error> {
    let mut reply = Reply::new(reply, "create")?;
    Ok(match reply.status()?.as_str() {
        "ok" => WriteReply::Wrote(Wrote {
            ttl_ms: reply.int()?,
            version: u64::try_from(reply.int()?).unwrap_or(0),
            size: usize::try_from(reply.int()?).unwrap_or(0),
            expires_at: reply.int()?,
            rolled: true,
            previous: reply.text()?,
            owner: reply.text()?,
            evicted: reply.rest(),
        }),
        other => reply.refusal(other)?,
    })
}

/// `incr.lua`: `{ 'ok', value, ttl, owner, rolled, version }` | `{ 'not_integer', value }` | ….
pub(super) fn incr_reply(reply: Value) -> Result<IncrReply, Error> {
    let mut reply = Reply::new(reply, "incr")?;
    Ok(match reply.status()?.as_str() {
        "ok" => IncrReply::To {
            value: reply.int()?,
            ttl_ms: reply.int()?,
            owner: reply.text()?,
        },
        "gone" => IncrReply::Gone,
        "not_integer" => IncrReply::NotInteger(reply.text()?.unwrap_or_default()),
        "too_large" => IncrReply::TooLarge,
        _ => return Err(unexpected_reply("incr")),
    })
}

/// `touch.lua`: the new TTL and when it runs out, or `None` when the session is gone.
pub(super) fn touch_reply(reply: Value) -> Result<Option<(i64, i64)>, Error> {
    match reply {
        Value::Null | Value::Boolean(false) => Ok(None),
        reply => {
            let mut reply = Reply::new(reply, "touch")?;
            Ok(Some((reply.int()?, reply.int()?)))
        }
    }
}

/// `destroy.lua`: `None` when there was no session, else its owner, if any.
pub(super) fn destroy_reply(reply: Value) -> Result<Option<Option<String>>, Error> {
    match reply {
        Value::Null => Ok(None),
        Value::Array(_) => Reply::new(reply, "destroy")?.text().map(Some),
        _ => Err(unexpected_reply("destroy")),
    }
}

/// `take_if.lua`.
pub(super) fn take_if_reply(reply: &Value) -> Result<Taken, Error> {
    match reply.as_str().as_deref() {
        Some("ok") => Ok(Taken::Deleted),
        Some("gone") => Ok(Taken::Gone),
        Some("changed") => Ok(Taken::Changed),
        _ => Err(unexpected_reply("take_if")),
    }
}

/// `destroy_user.lua` and `revoke.lua`: the key ids the user's index held.
pub(super) fn ids_reply(reply: Value, script: &'static str) -> Result<Vec<String>, Error> {
    match reply {
        Value::Null => Ok(Vec::new()),
        reply @ Value::Array(_) => Ok(Reply::new(reply, script)?.rest()),
        _ => Err(unexpected_reply(script)),
    }
}

/// `index.lua`: the user's epoch and the key ids the cap evicted, or `None` when the entry was
/// refused (the user logged out everywhere since the session recorded its epoch).
pub(super) fn index_reply(reply: Value) -> Result<Option<(i64, Vec<String>)>, Error> {
    let mut reply = Reply::new(reply, "index")?;
    match reply.status()?.as_str() {
        "ok" => Ok(Some((reply.int()?, reply.rest()))),
        "revoked" => Ok(None),
        _ => Err(unexpected_reply("index")),
    }
}

/// `devices.lua`, or the same six items per session gathered on a cluster: the sessions that carry a
/// handle (every session logged in does).
pub(super) fn devices_reply(reply: Value) -> Result<Vec<Listed>, Error> {
    let Value::Array(values) = reply else {
        return Ok(Vec::new());
    };
    let mut reply = Reply::new(Value::Array(values), "devices")?;
    let mut listed = Vec::new();
    while let Some(key_id) = reply.nullable()? {
        let created = reply.nullable()?.and_then(|ms| ms.parse().ok());
        let seen = reply.nullable()?.and_then(|ms| ms.parse().ok());
        let (user_agent, ip, handle) = (reply.nullable()?, reply.nullable()?, reply.nullable()?);
        if let (Some(created), Some(handle)) = (created, handle) {
            listed.push(Listed {
                key_id,
                created,
                // Set at login on this process's clock, a moment before Redis's `$created`.
                seen: seen.unwrap_or(created).max(created),
                user_agent,
                ip,
                handle,
            });
        }
    }
    Ok(listed)
}

/// `revoke.lua`: the user's new epoch, and the key ids the index held.
pub(super) fn revoke_reply(reply: Value) -> Result<(String, Vec<String>), Error> {
    let mut reply = Reply::new(reply, "revoke")?;
    let epoch = reply.status()?;
    Ok((epoch, reply.rest()))
}

/// `fast_update.lua`'s refusal of a save whose fencing token is no longer the session's.
pub(super) fn is_fenced(reply: &Value) -> bool {
    reply.as_str().as_deref() == Some("fenced")
}

/// `lock.lua`: `{ 'ours', token }` | `{ 'busy', ms }` | `{ 'not_ours' }` | `{ 'gone' }`.
pub(super) fn lock_reply(reply: Value) -> Result<Locked, Error> {
    let mut reply = Reply::new(reply, "lock")?;
    Ok(match reply.status()?.as_str() {
        "ours" => Locked::Ours(u64::try_from(reply.int()?).unwrap_or(0)),
        "busy" => Locked::Busy {
            left_ms: reply.int()?,
        },
        "not_ours" => Locked::NotOurs,
        "gone" => Locked::Gone,
        _ => return Err(unexpected_reply("lock")),
    })
}

/// A script's array reply, read in order.
struct Reply {
    values: std::vec::IntoIter<Value>,
    script: &'static str,
}

impl Reply {
    fn new(reply: Value, script: &'static str) -> Result<Self, Error> {
        match reply {
            Value::Array(values) => Ok(Self {
                values: values.into_iter(),
                script,
            }),
            _ => Err(unexpected_reply(script)),
        }
    }

    fn status(&mut self) -> Result<String, Error> {
        self.text()?.ok_or_else(|| unexpected_reply(self.script))
    }

    fn int(&mut self) -> Result<i64, Error> {
        self.values
            .next()
            .and_then(|value| value.as_i64())
            .ok_or_else(|| unexpected_reply(self.script))
    }

    /// A text value; `''` is `None`.
    fn text(&mut self) -> Result<Option<String>, Error> {
        let value = self
            .values
            .next()
            .ok_or_else(|| unexpected_reply(self.script))?;
        let text = text_of(value).ok_or_else(|| unexpected_reply(self.script))?;
        Ok(Some(text).filter(|text| !text.is_empty()))
    }

    /// The next value as text, `None` for a nil (a field that is absent); `Ok(None)` also once the
    /// reply is exhausted.
    fn nullable(&mut self) -> Result<Option<String>, Error> {
        match self.values.next() {
            None | Some(Value::Null) => Ok(None),
            Some(value) => text_of(value)
                .map(Some)
                .ok_or_else(|| unexpected_reply(self.script)),
        }
    }

    /// The remaining values, as text.
    fn rest(self) -> Vec<String> {
        self.values.filter_map(text_of).collect()
    }

    /// A write refused: `'gone'`, `'collision'`, `'too_large'` or `'fenced'`.
    fn refusal(&self, status: &str) -> Result<WriteReply, Error> {
        match status {
            "gone" => Ok(WriteReply::Gone),
            "fenced" => Ok(WriteReply::Fenced),
            "collision" => Ok(WriteReply::Collision),
            "too_large" => Ok(WriteReply::TooLarge),
            _ => Err(unexpected_reply(self.script)),
        }
    }
}

/// A reply's bulk string as text; `None` if it is not UTF-8. It arrives as `Value::String` when it
/// is: copying its `str` directly avoids fred's `into_string`, which goes through `Display` (a
/// quarter of a read's conversion cost).
fn text_of(value: Value) -> Option<String> {
    match value {
        Value::String(text) => Some(String::from(&*text)),
        other => other.into_string(),
    }
}

pub(super) fn unexpected_reply(call: &str) -> Error {
    Error::Store(FredError::new(
        ErrorKind::Protocol,
        format!("unexpected reply to {call}"),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// Lua code without its comments.
    fn code(lua: &str) -> String {
        lua.lines()
            .map(|line| line.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn is_ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_'
    }

    /// What follows each `word` in `text`, standing alone (not the tail of a longer name).
    fn words_after<'a>(text: &'a str, word: &str) -> Vec<&'a str> {
        text.match_indices(word)
            .filter(|(at, _)| !text[..*at].ends_with(is_ident))
            .map(|(at, _)| {
                let rest = &text[at + word.len()..];
                &rest[..rest.find(|c| !is_ident(c)).unwrap_or(rest.len())]
            })
            .collect()
    }

    /// `lib.lua`'s functions: each one's name and code.
    fn lib_functions() -> BTreeMap<String, String> {
        let lib = code(LIB);
        let starts: Vec<usize> = lib
            .match_indices("local function ")
            .map(|(at, _)| at)
            .collect();
        let mut functions = BTreeMap::new();
        for (i, &start) in starts.iter().enumerate() {
            let body = &lib[start..*starts.get(i + 1).unwrap_or(&lib.len())];
            let name = words_after(body, "local function ")[0];
            functions.insert(name.to_owned(), body.to_owned());
        }
        functions
    }

    /// The arguments `body` reads, itself or through the `lib.lua` functions it calls.
    fn arguments_read(body: &str) -> BTreeSet<String> {
        reads_and_calls(body).0
    }

    /// The arguments `body` reads and the `lib.lua` functions it calls, directly or not.
    fn reads_and_calls(body: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let functions = lib_functions();
        let mut read = BTreeSet::new();
        let mut called = BTreeSet::new();
        let mut pending = vec![code(body)];
        while let Some(text) = pending.pop() {
            read.extend(words_after(&text, "arg.").into_iter().map(str::to_owned));
            for (name, function) in &functions {
                let calls = text.match_indices(&format!("{name}(")).any(|(at, _)| {
                    !text[..at].ends_with(is_ident) && !text[..at].ends_with("function ")
                });
                if calls && called.insert(name.clone()) {
                    pending.push(function.clone());
                }
            }
        }
        (read, called)
    }

    #[test]
    fn a_script_built_without_lib_calls_none_of_its_helpers() {
        for (script, _, body) in CATALOGUE {
            let (_, called) = reads_and_calls(body);
            assert_eq!(
                WITHOUT_LIB.contains(script),
                called.is_empty(),
                "{script}.lua calls {called:?}"
            );
        }
    }

    #[test]
    fn every_argument_a_script_reads_is_one_rust_sends_and_the_other_way_round() {
        for (script, names, body) in CATALOGUE {
            let sent: BTreeSet<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let read = arguments_read(body);
            assert_eq!(
                read, sent,
                "{script}.lua reads {read:?}, Rust sends {sent:?}"
            );
            let header: String = body.lines().take_while(|l| l.starts_with("--")).collect();
            for name in *names {
                assert!(
                    header.contains(&format!("arg.{name} ")),
                    "{script}.lua's header does not describe arg.{name}"
                );
            }
        }
    }

    #[test]
    fn the_argument_check_sees_reads_through_lib_functions() {
        assert_eq!(
            arguments_read("local m = live_session(KEYS[1], {})"),
            BTreeSet::from(["inline_index", "key_id", "prefix"].map(String::from))
        );
        assert!(arguments_read("-- arg.idle in a comment").is_empty());
    }

    #[test]
    fn replies_decode_by_script() {
        let reply = |items: &[&str]| {
            Value::Array(items.iter().map(|i| Value::from(*i)).collect::<Vec<_>>())
        };
        let wrote = update_reply(reply(&["ok", "1000", "3", "12", "1", "alice", "9"])).unwrap();
        assert!(matches!(
            wrote,
            WriteReply::Wrote(Wrote { ttl_ms: 1000, version: 3, size: 12, rolled: true, ref owner, .. })
                if owner.as_deref() == Some("alice")
        ));
        let created =
            create_reply(reply(&["ok", "5", "0", "0", "9", "", "bob", "k1", "k2"])).unwrap();
        assert!(matches!(
            created,
            WriteReply::Wrote(Wrote { previous: None, ref evicted, .. }) if evicted == &["k1", "k2"]
        ));
        assert!(matches!(
            create_reply(reply(&["collision"])).unwrap(),
            WriteReply::Collision
        ));
        assert!(update_reply(reply(&["ok", "x"])).is_err());
        let pair = Value::Array(vec![Value::from(4), Value::from(12)]);
        assert_eq!(fast_update_reply(pair).unwrap(), Some((4, Some(12))));
        let unchanged = Value::Array(vec![Value::from(4), Value::Null]);
        assert_eq!(fast_update_reply(unchanged).unwrap(), Some((4, None)));
        assert_eq!(fast_update_reply(Value::Null).unwrap(), None);
        assert!(fast_update_reply(reply(&["ok"])).is_err());
        assert!(matches!(
            incr_reply(reply(&["not_integer", "abc"])).unwrap(),
            IncrReply::NotInteger(value) if value == "abc"
        ));
        assert_eq!(lock_reply(reply(&["ours", "7"])).unwrap(), Locked::Ours(7));
        assert_eq!(
            lock_reply(reply(&["busy", "250"])).unwrap(),
            Locked::Busy { left_ms: 250 }
        );
        assert!(matches!(
            update_reply(reply(&["fenced"])).unwrap(),
            WriteReply::Fenced
        ));
        assert!(is_fenced(&Value::from("fenced")));
    }
}

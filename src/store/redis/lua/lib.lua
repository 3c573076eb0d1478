-- Shared by every script: prepended to each of them, after a prelude written by scripts.rs that
-- defines `field` (the metadata field names), `arg` (the script's named arguments, from ARGV) and
-- `first_extra` (the index in ARGV of the first argument beyond the named ones). A function here
-- that reads `arg.X` may only be called by scripts that are sent X (a unit test checks it).

-- The server's clock in unix milliseconds, so every instance of the application agrees.
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

local function index_key(prefix, user)
  return prefix .. 'user:' .. user
end

-- Crate metadata, as opposed to user keys and flash values.
local function is_metadata(name)
  return string.sub(name, 1, 1) == '$' and string.sub(name, 1, #field.flash) ~= field.flash
end

-- HSET/HDEL/HMGET/ZREM in bounded batches: unpack() of a huge table overflows Lua's stack.
-- Returns the replies of the batches, concatenated.
local function call_batched(command, key, items)
  local replies = {}
  for first = 1, #items, 500 do
    local reply = redis.call(command, key, unpack(items, first, math.min(first + 499, #items)))
    if type(reply) == 'table' then
      for _, value in ipairs(reply) do
        replies[#replies + 1] = value
      end
    end
  end
  return replies
end

-- Delete the sessions with these key ids, in bounded batches: unpack() of a huge table overflows
-- Lua's stack.
local function delete_sessions(prefix, ids)
  for first = 1, #ids, 500 do
    local keys = {}
    for i = first, math.min(first + 499, #ids) do
      keys[#keys + 1] = prefix .. ids[i]
    end
    redis.call('DEL', unpack(keys))
  end
end

-- Ends the sessions with key ids `ids` of one user (one server): deletes them and their entries
-- in the user's `index`.
local function end_indexed(index, prefix, ids)
  delete_sessions(prefix, ids)
  call_batched('ZREM', index, ids)
end

-- On a cluster, a user's index also holds members scored +inf, so that expiry pruning and the cap
-- never take them and every entry (a key id, scored by its expiry) is found by scores below +inf:
-- the user's revocation epoch, the member `field.epoch .. ':' .. n`, 0 (no member) until the first
-- logout-everywhere on a cluster (see revoke.lua); and the device handles ended lately, members
-- `field.handle .. ':' .. ms .. ':' .. handle` (see end_handle.lua). '$e' sorts before '$h', so the
-- epoch, when there is one, is the first of them.
local function index_epoch_member(index)
  local member = redis.call('ZRANGEBYSCORE', index, '+inf', '+inf', 'LIMIT', 0, 1)[1]
  if member and string.sub(member, 1, #field.epoch + 1) == field.epoch .. ':' then
    return member
  end
  return nil
end

local function index_epoch(index)
  local member = index_epoch_member(index)
  if not member then
    return 0
  end
  return tonumber(string.sub(member, #field.epoch + 2)) or 0
end

-- The ended-handle markers of a user's index, as { member, ms, handle }, oldest first.
local function ended_handles(index)
  local marker = field.handle .. ':'
  local found = {}
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', index, '+inf', '+inf')) do
    if string.sub(member, 1, #marker) == marker then
      local ms, handle = string.match(string.sub(member, #marker + 1), '^(%d+):(.*)$')
      if ms then
        found[#found + 1] = { member, tonumber(ms), handle }
      end
    end
  end
  table.sort(found, function(a, b) return a[2] < b[2] end)
  return found
end

-- Keep at most `cap` entries in a user's index (`cap` '' for no limit), never `keep_id`: the
-- entries that expire first go, and are returned so that their sessions can be deleted. The
-- epoch member (scored +inf) is not an entry.
local function index_cap(index, keep_id, cap)
  if cap == '' then
    return {}
  end
  local excess = redis.call('ZCOUNT', index, '-inf', '(+inf') - tonumber(cap)
  if excess <= 0 then
    return {}
  end
  local evicted = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(+inf', 'LIMIT', 0, excess + 1)) do
    if id ~= keep_id and #evicted < excess then
      evicted[#evicted + 1] = id
    end
  end
  call_batched('ZREM', index, evicted)
  return evicted
end

-- Record that session `key_id` of a user lives `ttl` ms from `now`, prune entries that have expired,
-- and keep the index alive at least as long as the session, with `slack` so that not every write
-- has to rewrite its TTL.
local function index_add(index, key_id, now, ttl, slack)
  redis.call('ZADD', index, now + ttl, key_id)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  if redis.call('PTTL', index) < ttl then
    redis.call('PEXPIRE', index, ttl + slack)
  end
end

-- What the size limit counts in a flat field/value list: user fields' names and values.
local function user_size(flat)
  local size = 0
  for i = 1, #flat, 2 do
    if not is_metadata(flat[i]) then
      size = size + #flat[i] + #flat[i + 1]
    end
  end
  return size
end

-- The TTL a write leaves, and whether it rolls: the idle timeout (never past the absolute
-- deadline) once the stored expiry has run below `touch_below`, lies beyond the idle timeout (the
-- timeout was shortened since) or is unknown; else what remains, so that a busy session is not
-- re-expired and re-indexed on every write.
local function next_ttl(now, idle, deadline, expires, touch_below)
  local ttl = idle
  if deadline then
    ttl = math.max(1, math.min(ttl, deadline - now))
  end
  local remaining = expires and expires - now
  if not remaining or remaining < touch_below or remaining > idle then
    return ttl, true
  end
  return remaining, false
end

-- For the scripts that change a live session in place (update.lua, incr.lua, and touch.lua for
-- `live_session`).
--
-- The session's metadata (created, user, deadline, expires, size, version) and, from index 7, the
-- current values of the fields in `names`; then the server's time. Nil when the session is gone:
-- one past its absolute deadline is deleted here.
local function live_session(key, names)
  local m = redis.call('HMGET', key, field.created, field.user, field.deadline, field.expires,
                       field.size, field.version, unpack(names, 1, math.min(#names, 500)))
  if not m[1] then
    return nil
  end
  if #names > 500 then
    local rest = {}
    for i = 501, #names do
      rest[#rest + 1] = names[i]
    end
    -- HMGET's nils arrive as false: their positions are kept.
    for i, value in ipairs(call_batched('HMGET', key, rest)) do
      m[506 + i] = value
    end
  end
  local now = now_ms()
  local deadline = tonumber(m[3])
  if deadline and deadline <= now then
    redis.call('DEL', key)
    if m[2] and arg.inline_index == '1' then
      redis.call('ZREM', index_key(arg.prefix, m[2]), arg.key_id)
    end
    return nil
  end
  return m, now
end

-- The bytes of user fields a session read by `live_session` holds. A session last saved before
-- sizes were kept is counted once here.
local function live_size(key, m)
  return tonumber(m[5]) or user_size(redis.call('HGETALL', key))
end

-- Completes a write of a session read by `live_session`: sets `writes` (field/value pairs) with the
-- new version and size, rolls the TTL when it is due (keeping the owner's index in step), and reads
-- the key again, since a write ends this connection's tracking of it (near-cache). Returns the TTL
-- left in ms, whether it rolled, the new version, and when the TTL runs out (unix ms).
local function write_live(key, m, now, size, writes)
  local ttl, roll = next_ttl(now, tonumber(arg.idle), tonumber(m[3]), tonumber(m[4]),
                             tonumber(arg.touch_below))
  local version = (tonumber(m[6]) or 0) + 1
  writes[#writes + 1] = field.version
  writes[#writes + 1] = version
  writes[#writes + 1] = field.size
  writes[#writes + 1] = size
  if roll then
    -- Readers decide from this whether the TTL needs rolling, without a script of their own.
    writes[#writes + 1] = field.expires
    writes[#writes + 1] = now + ttl
    writes[#writes + 1] = field.seen
    writes[#writes + 1] = now
  end
  call_batched('HSET', key, writes)
  if roll then
    redis.call('PEXPIRE', key, ttl)
    if m[2] and arg.inline_index == '1' then
      index_add(index_key(arg.prefix, m[2]), arg.key_id, now, ttl, math.floor(tonumber(arg.idle) / 10))
    end
  end
  if arg.track == '1' then
    redis.call('EXISTS', key)
  end
  return ttl, roll, version, roll and now + ttl or tonumber(m[4])
end

-- Shared by every script: prepended to each of them, after a prelude written by redis.rs that
-- defines `field` (the metadata field names), `arg` (the script's named arguments, from ARGV) and
-- `first_extra` (the index in ARGV of the first argument beyond the named ones).

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

-- Keep at most `cap` entries in a user's index (`cap` '' for no limit), never `keep_id`: the
-- entries that expire first go, and are returned so that their sessions can be deleted.
local function index_cap(index, keep_id, cap)
  if cap == '' then
    return {}
  end
  local excess = redis.call('ZCARD', index) - tonumber(cap)
  if excess <= 0 then
    return {}
  end
  local evicted = {}
  for _, id in ipairs(redis.call('ZRANGE', index, 0, excess)) do
    if id ~= keep_id and #evicted < excess then
      evicted[#evicted + 1] = id
    end
  end
  redis.call('ZREM', index, unpack(evicted))
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

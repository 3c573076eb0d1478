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

-- The write nearly every request makes: user fields of a live session this request read, with no
-- TTL roll due, no login, no clear and no metadata (the caller decides that from what it read). It
-- writes no TTL and no index: the session keeps the expiry it has. Each call to Redis is a good part
-- of its cost, so it makes as few as it can: it runs without lib.lua's helpers, learns liveness
-- from the version it bumps, and leaves the size alone when the write does not change it.
--
-- KEYS[1]            the session hash
-- arg.delta          the change in bytes of user fields, from the values the request read
-- arg.track          '1' when the near-cache tracks the key: read it again after writing it
-- arg.fence          '' unless the request holds the session's lock: its fencing token, which must
--                    still be the session's `$fence` (else nothing is written)
-- arg.sets           n, the number of fields set; from ARGV[first_extra], n field/value pairs
--                    follow, then the fields removed
--
-- Returns { version, size or false when arg.delta is '0' } | false when the session no longer exists
-- | 'fenced' when another request has taken the lock since this one's expired; nothing is written
-- then.

local key = KEYS[1]
if arg.fence ~= '' and redis.call('HGET', key, field.fence) ~= arg.fence then
  -- A session that is gone has no `$fence` either: say so, as below.
  if redis.call('HEXISTS', key, field.created) == 0 then
    return false
  end
  return 'fenced'
end
local version = redis.call('HINCRBY', key, field.version, 1)
-- A missing key gives 1 too, as does a session created at version 0: only a hash with $created is a
-- session, and what HINCRBY made of a missing one goes at once.
if version == 1 and redis.call('HEXISTS', key, field.created) == 0 then
  redis.call('DEL', key)
  return false
end
local removed_from = first_extra + 2 * tonumber(arg.sets)
if removed_from > first_extra then
  redis.call('HSET', key, unpack(ARGV, first_extra, removed_from - 1))
end
if #ARGV >= removed_from then
  redis.call('HDEL', key, unpack(ARGV, removed_from, #ARGV))
end
local size = false
if arg.delta ~= '0' then
  size = redis.call('HINCRBY', key, field.size, tonumber(arg.delta))
end
-- A write ends this connection's tracking of the key; reading it again renews it (near-cache).
if arg.track == '1' then
  redis.call('EXISTS', key)
end
return { version, size }

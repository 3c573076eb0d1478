-- Roll a session's idle TTL, when a read found it running low. Reads themselves are a plain HGETALL;
-- this runs only when the `$expires` they saw says the TTL is below the touch threshold.
--
-- KEYS[1]  the session hash
-- ARGV[1]  idle timeout, ms
-- ARGV[2]  key prefix (for the owner's index)
-- ARGV[3]  this session's key id (its member name in the index)
-- ARGV[4]  '1' to update the owner's index here; '0' on a cluster, where the caller does it
--
-- Returns false when the session no longer exists, else its new TTL in ms.

local meta = redis.call('HMGET', KEYS[1], '$deadline', '$user')
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local now = now_ms()
local deadline, user = tonumber(meta[1]), meta[2]
local ttl = tonumber(ARGV[1])
if deadline then
  ttl = math.min(ttl, deadline - now)
  if ttl <= 0 then
    redis.call('DEL', KEYS[1])
    if user and ARGV[4] == '1' then
      redis.call('ZREM', index_key(ARGV[2], user), ARGV[3])
    end
    return false
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('HSET', KEYS[1], '$expires', now + ttl)
if user and ARGV[4] == '1' then
  index_add(index_key(ARGV[2], user), ARGV[3], now, ttl, math.floor(tonumber(ARGV[1]) / 10))
end
return ttl

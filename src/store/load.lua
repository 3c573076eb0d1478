-- Load a session and, when its TTL has run low, roll it: one round trip for every read.
--
-- KEYS[1]  the session hash
-- ARGV[1]  idle timeout, ms
-- ARGV[2]  touch threshold, ms: the TTL is rolled only when less than this remains
-- ARGV[3]  key prefix (for the owner's index)
-- ARGV[4]  this session's key id (its member name in the index)
-- ARGV[5]  '1' to update the owner's index here; '0' on a cluster, where the caller does it
--
-- Returns false when there is no live session, else { remaining ttl ms, touched 0|1, fields... }.

local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
  return false
end

local now = now_ms()
local deadline, user
for i = 1, #fields, 2 do
  if fields[i] == '$deadline' then
    deadline = tonumber(fields[i + 1])
  elseif fields[i] == '$user' then
    user = fields[i + 1]
  end
end

local inline_index = ARGV[5] == '1'
if deadline and deadline <= now then
  redis.call('DEL', KEYS[1])
  if user and inline_index then
    redis.call('ZREM', index_key(ARGV[3], user), ARGV[4])
  end
  return false
end

local ttl = redis.call('PTTL', KEYS[1])
local touched = 0
if ttl < tonumber(ARGV[2]) then
  local new_ttl = tonumber(ARGV[1])
  if deadline then
    new_ttl = math.min(new_ttl, deadline - now)
  end
  if new_ttl > ttl then
    redis.call('PEXPIRE', KEYS[1], new_ttl)
    ttl = new_ttl
    touched = 1
    if user and inline_index then
      index_add(index_key(ARGV[3], user), ARGV[4], now, new_ttl, math.floor(tonumber(ARGV[1]) / 10))
    end
  end
end

return { ttl, touched, fields }

-- Load a session and, when its TTL has run low, roll it: one round trip for every read.
--
-- KEYS[1]  the session hash
-- ARGV[1]  idle timeout, ms
-- ARGV[2]  touch threshold, ms: the TTL is rolled only when less than this remains
-- ARGV[3]  key prefix (for the owner's index)
-- ARGV[4]  this session's key id (its member name in the index)
--
-- Returns false when there is no live session, else { remaining ttl ms, touched 0|1, fields... }.

local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
  return false
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local deadline, user
for i = 1, #fields, 2 do
  if fields[i] == '$deadline' then
    deadline = tonumber(fields[i + 1])
  elseif fields[i] == '$user' then
    user = fields[i + 1]
  end
end

if deadline and deadline <= now then
  redis.call('DEL', KEYS[1])
  if user then
    redis.call('ZREM', ARGV[3] .. 'user:' .. user, ARGV[4])
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
    if user then
      local index = ARGV[3] .. 'user:' .. user
      redis.call('ZADD', index, now + new_ttl, ARGV[4])
      if redis.call('PTTL', index) < new_ttl then
        redis.call('PEXPIRE', index, new_ttl + math.floor(tonumber(ARGV[1]) / 10))
      end
    end
  end
end

return { ttl, touched, fields }

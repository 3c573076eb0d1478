-- A foreign session's read: its whole value and its TTL (DESIGN §11).
--
-- KEYS[1]   the session's key, as the other framework names it
--
-- Returns false when there is no such key, else { value, TTL in ms }.

local value = redis.call('GET', KEYS[1])
if not value then
  return false
end
return { value, redis.call('PTTL', KEYS[1]) }

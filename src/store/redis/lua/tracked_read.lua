-- The near-cache's read of a session it does not hold: HGETALL, only when the key exists. With
-- client tracking on, Redis remembers every key a connection reads, one that does not exist as
-- long as one that does, so reads under random cookies would fill its tracking table (and pause
-- the cache). RENAMENX of a key onto itself changes nothing: it answers 0 when the key exists and
-- an error when it does not, and Redis does not track it, since it counts as a write.
--
-- KEYS[1]            the session hash
--
-- Returns HGETALL's reply, or an empty array when there is no such key.

if redis.pcall('RENAMENX', KEYS[1], KEYS[1]) == 0 then
  return redis.call('HGETALL', KEYS[1])
end
return {}

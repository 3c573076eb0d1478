-- Roll a session's idle TTL (and `$seen`: when a request last loaded it), when a read found it
-- running low. Reads themselves are a plain HGETALL; this runs only when the `$expires` they saw
-- says the TTL is below the touch threshold.
--
-- KEYS[1]            the session hash
-- arg.idle           idle timeout, ms
-- arg.prefix         key prefix (for the owner's index)
-- arg.key_id         this session's key id (its member name in the index)
-- arg.inline_index   '1' to update the owner's index here; '0' on a cluster, where the caller does it
-- arg.track          '1' when the near-cache tracks the key: read it again after writing it
--
-- Returns false when the session no longer exists, else { its new TTL in ms, when it runs out (unix
-- ms) }.

local m, now = live_session(KEYS[1], {})
if not m then
  return false
end
local user = m[2]
-- Given no stored expiry, next_ttl always rolls: to the idle timeout, or the deadline if nearer.
local ttl = next_ttl(now, tonumber(arg.idle), tonumber(m[3]), nil, 0)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('HSET', KEYS[1], field.expires, now + ttl, field.seen, now)
if user and arg.inline_index == '1' then
  index_add(index_key(arg.prefix, user), arg.key_id, now, ttl, math.floor(tonumber(arg.idle) / 10))
end
-- A write ends this connection's tracking of the key; reading it again renews it (near-cache).
if arg.track == '1' then
  redis.call('EXISTS', KEYS[1])
end
return { ttl, now + ttl }

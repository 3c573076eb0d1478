-- Add to an integer field of a live session, atomically, and return its new value: N concurrent
-- increments give exactly +N. The session must exist (no resurrection); it is never created here.
--
-- KEYS[1]            the session hash
-- arg.field          the field to add to (a user key)
-- arg.by             the integer to add
-- arg.idle           idle timeout, ms
-- arg.max_bytes      size limit, bytes of user fields' names and values
-- arg.prefix         key prefix (for the owner's index)
-- arg.key_id         this session's key id
-- arg.inline_index   '1' to update the owner's index here; '0' on a cluster, where the caller does it
-- arg.touch_below    touch threshold, ms: the TTL is rolled only once it has run below this
-- arg.track          '1' when the near-cache tracks the key: read it again after writing it
--
-- Returns { 'ok', new value, ttl ms, owner or '', '1' if the TTL was rolled else '0', version } |
-- { 'gone' } | { 'not_integer', current value } | { 'too_large' }; nothing is written unless 'ok'.

local target = KEYS[1]
local m = redis.call('HMGET', target, field.created, field.user, field.deadline, field.expires,
                     field.size, field.version, arg.field)
if not m[1] then
  return { 'gone' }
end
local now = now_ms()
local user, deadline = m[2], tonumber(m[3])
if deadline and deadline <= now then
  redis.call('DEL', target)
  if user and arg.inline_index == '1' then
    redis.call('ZREM', index_key(arg.prefix, user), arg.key_id)
  end
  return { 'gone' }
end
local current = m[7]
if current and not string.match(current, '^-?%d+$') then
  return { 'not_integer', current }
end

local value = (tonumber(current) or 0) + tonumber(arg.by)
local old_size = tonumber(m[5]) or 0
local size = old_size - (current and #arg.field + #current or 0) + #arg.field + #tostring(value)
if size > tonumber(arg.max_bytes) and size > old_size then
  return { 'too_large' }
end

local idle = tonumber(arg.idle)
local ttl = idle
if deadline then
  ttl = math.max(1, math.min(ttl, deadline - now))
end
local stored_expires = tonumber(m[4])
local remaining = stored_expires and stored_expires - now
local roll = not remaining or remaining < tonumber(arg.touch_below) or remaining > idle
local version = (tonumber(m[6]) or 0) + 1
value = redis.call('HINCRBY', target, arg.field, arg.by)
local writes = { field.version, version, field.size, size }
if roll then
  writes[#writes + 1] = field.expires
  writes[#writes + 1] = now + ttl
else
  ttl = remaining
end
redis.call('HSET', target, unpack(writes))
if roll then
  redis.call('PEXPIRE', target, ttl)
  if user and arg.inline_index == '1' then
    index_add(index_key(arg.prefix, user), arg.key_id, now, ttl, math.floor(idle / 10))
  end
end
-- A write ends this connection's tracking of the key; reading it again renews it (near-cache).
if arg.track == '1' then
  redis.call('EXISTS', target)
end
return { 'ok', value, ttl, user or '', roll and '1' or '0', version }

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
local m, now = live_session(target, { arg.field })
if not m then
  return { 'gone' }
end
local current = m[7]
if current and not string.match(current, '^-?%d+$') then
  return { 'not_integer', current }
end

local value = (tonumber(current) or 0) + tonumber(arg.by)
local old_size = live_size(target, m)
local size = old_size - (current and #arg.field + #current or 0) + #arg.field + #tostring(value)
if size > tonumber(arg.max_bytes) and size > old_size then
  return { 'too_large' }
end

value = redis.call('HINCRBY', target, arg.field, arg.by)
local ttl, roll, version = write_live(target, m, now, size, {})
return { 'ok', value, ttl, m[2] or '', roll and '1' or '0', version }

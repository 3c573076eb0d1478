-- The last step of cycling an id on a cluster: delete the old session, but only if it still holds
-- what the move copied to the new id (written just before, on another slot).
--
-- KEYS[1]       the old session hash
-- arg.version   its `$version` as the move read it, or ''
--
-- Returns 'ok' (deleted) | 'gone' (a logout or an expiry took it meanwhile) | 'changed' (a write
-- landed meanwhile; nothing deleted).

local meta = redis.call('HMGET', KEYS[1], field.created, field.version)
if not meta[1] then
  return 'gone'
end
if (meta[2] or '') ~= arg.version then
  return 'changed'
end
redis.call('DEL', KEYS[1])
return 'ok'

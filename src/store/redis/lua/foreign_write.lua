-- A foreign session's write. The other framework stores a session as one value, so a change is a
-- compare-and-set of the whole value: it is written only if the key still holds what the caller
-- read, and a caller told 'changed' re-applies its delta to what is there now. No write here
-- recreates a key that is gone.
--
-- KEYS[1]        the session's key
-- KEYS[2]        (optional) the other framework's lock on the session: while it exists, the
--                value is not replaced, since its holder will write the whole value back
-- arg.op         'create': only if the key is free; 'replace' / 'delete': only if it holds
--                arg.expected; 'take': delete it whatever it holds; 'expire': set its TTL only
-- arg.expected   the value the caller read
-- arg.value      the new value
-- arg.ttl        its TTL, ms
--
-- Returns { 'ok' } ({ 'ok', old value } for take), { 'changed', current value }, { 'gone' },
-- { 'taken' } (create: the key is in use) or { 'locked' }.

local key = KEYS[1]
if arg.op == 'create' then
  if redis.call('SET', key, arg.value, 'NX', 'PX', arg.ttl) then
    return { 'ok' }
  end
  return { 'taken' }
end
if arg.op == 'expire' then
  if redis.call('PEXPIRE', key, arg.ttl) == 1 then
    return { 'ok' }
  end
  return { 'gone' }
end
local current = redis.call('GET', key)
if not current then
  return { 'gone' }
end
if arg.op == 'take' then
  redis.call('DEL', key)
  return { 'ok', current }
end
if current ~= arg.expected then
  return { 'changed', current }
end
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then
  return { 'locked' }
end
if arg.op == 'delete' then
  redis.call('DEL', key)
else
  redis.call('SET', key, arg.value, 'PX', arg.ttl)
end
return { 'ok' }

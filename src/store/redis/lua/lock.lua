-- One step of a session's lock (Session::lock), on the session's own hash so that it shares the
-- session's slot and the save scripts can check it in the same step as their write. `$lock` holds
-- '{token}:{expires}' while a request holds the lock; `$fence` the last token handed out, so that
-- every lock taken gets a larger one. Never creates the session.
--
-- KEYS[1]      the session hash
-- arg.op       'take', 'renew' or 'release'
-- arg.token    renew and release: the holder's fencing token; take: ''
-- arg.ttl      take and renew: how long the lock lives unless renewed, ms; release: ''
--
-- Returns { 'ours', token } (taken, renewed or released) | { 'busy', ms the other holder's lock
-- still runs } (take only; nothing written) | { 'not_ours' } (renew and release: it expired and
-- another request took it, or it was freed) | { 'gone' } (no session).

local key = KEYS[1]
if redis.call('HEXISTS', key, field.created) == 0 then
  return { 'gone' }
end
local now = now_ms()
local held, expires = nil, nil
local value = redis.call('HGET', key, field.lock)
if value then
  held, expires = string.match(value, '^(%d+):(%d+)$')
  expires = tonumber(expires)
end

if arg.op == 'take' then
  if expires and expires > now then
    return { 'busy', expires - now }
  end
  local token = redis.call('HINCRBY', key, field.fence, 1)
  redis.call('HSET', key, field.lock, token .. ':' .. (now + tonumber(arg.ttl)))
  return { 'ours', token }
end

-- An expired lock that nobody took since is still the holder's: no one else has worked under it.
if held ~= arg.token then
  return { 'not_ours' }
end
if arg.op == 'renew' then
  redis.call('HSET', key, field.lock, held .. ':' .. (now + tonumber(arg.ttl)))
else
  redis.call('HDEL', key, field.lock)
end
return { 'ours', tonumber(held) }

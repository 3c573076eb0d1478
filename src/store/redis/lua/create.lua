-- Write a session under a fresh id, atomically, in one round trip: a new session, or one moved from
-- its old id (a cycle: login, change of privilege), whose old key is deleted in the same step.
--
-- KEYS[1]            the fresh session hash; it must be free (else nothing is written)
-- KEYS[2]            cycle only: the hash the session moves from; it must still exist
-- arg.mode           'new' (created with the changes) or 'cycle' (the data moves, changed)
-- arg.idle           idle timeout, ms
-- arg.absolute       absolute timeout, ms, or '' for none
-- arg.max_bytes      size limit, bytes of user fields' names and values
-- arg.prefix         key prefix (for the owner's index)
-- arg.key_id         key id of KEYS[1]
-- arg.source_id      key id of KEYS[2], or ''
-- arg.clear          '1' to remove every user field before applying the rest
-- arg.user           user id to bind the session to, or '' to keep the current one
-- arg.inline_index   '1' to update the owners' indexes here; '0' on a cluster, where the caller does it
-- arg.max_per_user   at a login (arg.user set), the most sessions the user may keep, or ''; the
--                    sessions that expire first go
-- arg.track          '1' when the near-cache tracks the key: read it again after writing it
-- arg.sets           n, the number of fields set; from ARGV[first_extra], n field/value pairs
--                    follow, then the fields removed
--
-- Returns { 'ok', ttl ms, version, size, when the TTL runs out (unix ms), previous owner or '',
-- owner or '', key ids of the sessions evicted by the cap… } | { 'gone' } | { 'collision' } | { 'too_large' }; nothing is
-- written unless it returns 'ok'.

local target, source = KEYS[1], KEYS[2]
local inline_index = arg.inline_index == '1'
local now = now_ms()

if redis.call('EXISTS', target) == 1 then
  return { 'collision' }
end

-- The session as it will be written, whole, and the bytes of its user fields.
local whole, size, old_user = {}, 0, nil
if arg.mode == 'new' then
  whole[field.created] = tostring(now)
  if arg.absolute ~= '' then
    whole[field.deadline] = tostring(now + tonumber(arg.absolute))
  end
else
  local flat = redis.call('HGETALL', source)
  for i = 1, #flat, 2 do
    whole[flat[i]] = flat[i + 1]
  end
  -- A hash without it is no session: what is left of one that a write raced the end of.
  if not whole[field.created] then
    return { 'gone' }
  end
  old_user = whole[field.user]
  -- The lock belongs to the old id, whose holder releases it there.
  whole[field.lock], whole[field.fence] = nil, nil
  local deadline = tonumber(whole[field.deadline])
  if deadline and deadline <= now then
    redis.call('DEL', source)
    if old_user and inline_index then
      redis.call('ZREM', index_key(arg.prefix, old_user), arg.source_id)
    end
    return { 'gone' }
  end
  size = user_size(flat)
end
local old_size = size

if arg.clear == '1' then
  for name in pairs(whole) do
    if not is_metadata(name) then
      whole[name] = nil
    end
  end
  size = 0
end
-- The bytes a user field holds now (name and value), or 0 when it is absent.
local function held(name)
  local value = whole[name]
  return value and #name + #value or 0
end
local removed_from = first_extra + 2 * tonumber(arg.sets)
for i = first_extra, removed_from - 1, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  -- Metadata among the changes (a cluster's cycle sends the whole moved session) is not counted in
  -- the size.
  if not is_metadata(name) then
    size = size - held(name) + #name + #value
  end
  whole[name] = value
end
for i = removed_from, #ARGV do
  local name = ARGV[i]
  if not is_metadata(name) then
    size = size - held(name)
  end
  whole[name] = nil
end
if size > tonumber(arg.max_bytes) and size > old_size then
  return { 'too_large' }
end
local user = old_user
if arg.user ~= '' then
  user = arg.user
  whole[field.user] = user
end

local idle = tonumber(arg.idle)
-- A moved session keeps its own deadline; a new or moved session always rolls.
local ttl = next_ttl(now, idle, tonumber(whole[field.deadline]), nil, 0)
local version = arg.mode == 'new' and 0 or (tonumber(whole[field.version]) or 0) + 1
whole[field.expires] = tostring(now + ttl)
whole[field.version] = tostring(version)
whole[field.size] = tostring(size)

if source then
  redis.call('DEL', source)
end
local writes = {}
for name, value in pairs(whole) do
  writes[#writes + 1] = name
  writes[#writes + 1] = value
end
call_batched('HSET', target, writes)
redis.call('PEXPIRE', target, ttl)

local reply = { 'ok', ttl, version, size, now + ttl, old_user or '', user or '' }
if inline_index then
  if old_user then
    redis.call('ZREM', index_key(arg.prefix, old_user), arg.source_id)
  end
  if user then
    index_add(index_key(arg.prefix, user), arg.key_id, now, ttl, math.floor(idle / 10))
  end
  if arg.user ~= '' then
    local evicted = index_cap(index_key(arg.prefix, user), arg.key_id, arg.max_per_user)
    delete_sessions(arg.prefix, evicted)
    for _, id in ipairs(evicted) do
      reply[#reply + 1] = id
    end
  end
end

-- A write ends this connection's tracking of the key; reading it again renews it (near-cache).
if arg.track == '1' then
  redis.call('EXISTS', target)
end
return reply

-- Apply one request's changes to a session, atomically, in one round trip.
--
-- KEYS[1]            the session hash that receives the changes
-- KEYS[2]            cycle only: the hash the session moves from; deleted by this script
-- arg.mode           'new'    KEYS[1] must be free (a fresh id): created with the changes
--                    'update' KEYS[1] must still exist (no resurrection): changed fields only
--                    'cycle'  KEYS[2] must still exist and KEYS[1] be free: the data moves
-- arg.idle           idle timeout, ms
-- arg.absolute       absolute timeout, ms, or '' for none
-- arg.max_bytes      size limit, bytes of user fields' names and values
-- arg.prefix         key prefix (for the owner's index)
-- arg.key_id         key id of KEYS[1]
-- arg.source_id      key id of KEYS[2], or ''
-- arg.clear          '1' to remove every user field before applying the rest
-- arg.user           user id to bind the session to, or '' to keep the current one
-- arg.inline_index   '1' to update the owners' indexes here; '0' on a cluster, where the caller does it
-- arg.touch_below    touch threshold, ms: an update rolls the TTL only once it has run below this
-- arg.max_per_user   at a login (arg.user set), the most sessions the user may keep, or ''; the
--                    sessions that expire first go
-- arg.track          '1' when the near-cache tracks the key: read it again after writing it
-- arg.sets           n, the number of fields set; from ARGV[first_extra], n field/value pairs
--                    follow, then the fields removed
--
-- An update reads only the session's metadata and the lengths of the fields it changes: its cost
-- does not grow with the size of the session. The size is kept in `field.size` as it changes.
--
-- Returns { 'ok', ttl ms, previous owner or '', owner or '', '1' if the TTL was rolled else '0',
-- version, size, key ids of the sessions evicted by the cap… } | { 'gone' } | { 'collision' } |
-- { 'too_large' }; nothing is written unless it returns 'ok'.

local mode, target, source = arg.mode, KEYS[1], KEYS[2]
local inline_index = arg.inline_index == '1'
local now = now_ms()

-- HSET/HDEL in bounded batches: unpack() of a huge table overflows Lua's stack.
local function call_batched(command, key, items)
  for first = 1, #items, 1000 do
    redis.call(command, key, unpack(items, first, math.min(first + 999, #items)))
  end
end

if mode ~= 'update' and redis.call('EXISTS', target) == 1 then
  return { 'collision' }
end

-- The session as it stands: its metadata and user size; for a new or moved session, also every
-- field in `whole`, since they are all written to the new key.
local meta, size, whole, current = {}, 0, nil, nil
if mode == 'new' then
  whole = { [field.created] = tostring(now) }
  if arg.absolute ~= '' then
    whole[field.deadline] = tostring(now + tonumber(arg.absolute))
  end
elseif mode == 'cycle' then
  local flat = redis.call('HGETALL', source)
  if #flat == 0 then
    return { 'gone' }
  end
  whole = {}
  for i = 1, #flat, 2 do
    whole[flat[i]] = flat[i + 1]
  end
  meta = { user = whole[field.user], deadline = whole[field.deadline],
           expires = whole[field.expires], version = whole[field.version] }
  size = user_size(flat)
else
  -- The metadata, and in the same call the current values of the user fields this request
  -- changes (their sizes are what the size limit needs), in batches of at most 500.
  local changed = {}
  for i = first_extra, #ARGV do
    local is_name = i < first_extra + 2 * tonumber(arg.sets) and (i - first_extra) % 2 == 0
    is_name = is_name or i >= first_extra + 2 * tonumber(arg.sets)
    if is_name and not is_metadata(ARGV[i]) then
      changed[#changed + 1] = ARGV[i]
    end
  end
  local m = redis.call('HMGET', target, field.created, field.user, field.deadline, field.expires,
                       field.size, field.version, unpack(changed, 1, math.min(#changed, 500)))
  if not m[1] then
    return { 'gone' }
  end
  meta = { user = m[2], deadline = m[3], expires = m[4], version = m[6] }
  current = {}
  for i = 1, math.min(#changed, 500) do
    current[changed[i]] = m[6 + i]
  end
  for first = 501, #changed, 500 do
    local values = redis.call('HMGET', target, unpack(changed, first, math.min(first + 499, #changed)))
    for i, value in ipairs(values) do
      current[changed[first + i - 1]] = value
    end
  end
  -- A session last saved before sizes were kept is counted once here.
  size = tonumber(m[5]) or user_size(redis.call('HGETALL', target))
end

local old_user = meta.user
local stored_deadline = tonumber(meta.deadline)
if mode ~= 'new' and stored_deadline and stored_deadline <= now then
  redis.call('DEL', mode == 'cycle' and source or target)
  if old_user and inline_index then
    redis.call('ZREM', index_key(arg.prefix, old_user), mode == 'cycle' and arg.source_id or arg.key_id)
  end
  return { 'gone' }
end

-- The bytes a user field holds now (name and value), or 0 when it is absent.
local cleared = arg.clear == '1'
local function held(name)
  if cleared then
    return 0
  end
  local value = (whole or current)[name]
  return value and #name + #value or 0
end

local old_size = size
local set, removed = {}, {}
if cleared then
  if whole then
    for name in pairs(whole) do
      if not is_metadata(name) then
        whole[name] = nil
      end
    end
  else
    for _, name in ipairs(redis.call('HKEYS', target)) do
      if not is_metadata(name) then
        removed[name] = true
      end
    end
  end
  size = 0
end
local n = tonumber(arg.sets)
-- Metadata the request changes (the CSRF token) is not counted in the size.
for i = first_extra, first_extra + 2 * n - 1, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  if not is_metadata(name) then
    size = size - held(name) + #name + #value
  end
  set[name] = value
  removed[name] = nil
end
for i = first_extra + 2 * n, #ARGV do
  local name = ARGV[i]
  if not is_metadata(name) then
    size = size - held(name)
  end
  set[name] = nil
  removed[name] = true
end
if size > tonumber(arg.max_bytes) and size > old_size then
  return { 'too_large' }
end
local user = old_user
if arg.user ~= '' then
  user = arg.user
  set[field.user] = user
end

local idle = tonumber(arg.idle)
-- A session moved in from elsewhere keeps its own deadline; a new or moved session always rolls.
local deadline = stored_deadline or (whole and tonumber(whole[field.deadline]))
local expires = mode == 'update' and tonumber(meta.expires) or nil
local ttl, roll = next_ttl(now, idle, deadline, expires, tonumber(arg.touch_below))
if roll then
  -- Readers decide from this whether the TTL needs rolling, without a script of their own.
  set[field.expires] = tostring(now + ttl)
end
local version = mode == 'new' and 0 or (tonumber(meta.version) or 0) + 1
set[field.version] = tostring(version)
set[field.size] = tostring(size)

local writes = {}
if whole then
  if mode == 'cycle' then
    redis.call('DEL', source)
  end
  for name, value in pairs(set) do
    whole[name] = value
  end
  for name in pairs(removed) do
    whole[name] = nil
  end
  for name, value in pairs(whole) do
    writes[#writes + 1] = name
    writes[#writes + 1] = value
  end
else
  local deletes = {}
  for name in pairs(removed) do
    deletes[#deletes + 1] = name
  end
  call_batched('HDEL', target, deletes)
  for name, value in pairs(set) do
    writes[#writes + 1] = name
    writes[#writes + 1] = value
  end
end
call_batched('HSET', target, writes)
if roll then
  redis.call('PEXPIRE', target, ttl)
end

local reply = { 'ok', ttl, old_user or '', user or '', roll and '1' or '0', version, size }
if inline_index then
  if old_user and (old_user ~= user or mode == 'cycle') then
    redis.call('ZREM', index_key(arg.prefix, old_user), mode == 'cycle' and arg.source_id or arg.key_id)
  end
  if user and (roll or user ~= old_user) then
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

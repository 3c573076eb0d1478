-- Apply one request's changes to a session, atomically, in one round trip.
--
-- KEYS[1]  the session hash that receives the changes
-- KEYS[2]  cycle only: the hash the session moves from; deleted by this script
-- ARGV[1]  'new'    KEYS[1] must be free (a fresh id): created with the changes
--          'update' KEYS[1] must still exist (no resurrection): changed fields only
--          'cycle'  KEYS[2] must still exist and KEYS[1] be free: the data moves
-- ARGV[2]  idle timeout, ms
-- ARGV[3]  absolute timeout, ms, or '' for none
-- ARGV[4]  size limit, bytes
-- ARGV[5]  key prefix (for the owner's index)
-- ARGV[6]  key id of KEYS[1]
-- ARGV[7]  key id of KEYS[2], or ''
-- ARGV[8]  '1' to remove every user field before applying the rest
-- ARGV[9]  user id to bind the session to, or '' to keep the current one
-- ARGV[10] '1' to update the owners' indexes here; '0' on a cluster, where the caller does it
-- ARGV[11] touch threshold, ms: an update rolls the TTL only once it has run below this
-- ARGV[12] n, the number of fields set; n field/value pairs follow, then the fields removed
--
-- Returns { 'ok', ttl ms, previous owner or '', owner or '', '1' if the TTL was rolled else '0' } |
-- { 'gone' } | { 'collision' } | { 'too_large' }; nothing is written unless it returns 'ok'.

local mode, target, source = ARGV[1], KEYS[1], KEYS[2]
local prefix = ARGV[5]
local inline_index = ARGV[10] == '1'
local now = now_ms()

local function is_metadata(field)
  return string.sub(field, 1, 1) == '$' and string.sub(field, 1, 7) ~= '$flash:'
end

-- HSET/HDEL in bounded batches: unpack() of a huge table overflows Lua's stack.
local function call_batched(command, key, items)
  for first = 1, #items, 1000 do
    redis.call(command, key, unpack(items, first, math.min(first + 999, #items)))
  end
end

if mode ~= 'update' and redis.call('EXISTS', target) == 1 then
  return { 'collision' }
end

local fields, old_size = {}, 0
if mode == 'new' then
  fields['$created'] = tostring(now)
  if ARGV[3] ~= '' then
    fields['$deadline'] = tostring(now + tonumber(ARGV[3]))
  end
else
  local flat = redis.call('HGETALL', mode == 'cycle' and source or target)
  if #flat == 0 then
    return { 'gone' }
  end
  for i = 1, #flat, 2 do
    fields[flat[i]] = flat[i + 1]
    old_size = old_size + #flat[i] + #flat[i + 1]
  end
end

local old_user = fields['$user']
local stored_deadline = tonumber(fields['$deadline'])
if mode ~= 'new' and stored_deadline and stored_deadline <= now then
  redis.call('DEL', mode == 'cycle' and source or target)
  if old_user and inline_index then
    redis.call('ZREM', index_key(prefix, old_user), mode == 'cycle' and ARGV[7] or ARGV[6])
  end
  return { 'gone' }
end

local set, removed = {}, {}
if ARGV[8] == '1' then
  for field in pairs(fields) do
    if not is_metadata(field) then
      fields[field] = nil
      removed[field] = true
    end
  end
end
local n = tonumber(ARGV[12])
for i = 13, 12 + 2 * n, 2 do
  fields[ARGV[i]] = ARGV[i + 1]
  set[ARGV[i]] = true
  removed[ARGV[i]] = nil
end
for i = 13 + 2 * n, #ARGV do
  fields[ARGV[i]] = nil
  removed[ARGV[i]] = true
end
if ARGV[9] ~= '' then
  fields['$user'] = ARGV[9]
  set['$user'] = true
end

local size = 0
for field, value in pairs(fields) do
  size = size + #field + #value
end
if size > tonumber(ARGV[4]) and size > old_size then
  return { 'too_large' }
end

-- A session moved in from elsewhere keeps its own deadline, so read it after the changes.
local idle = tonumber(ARGV[2])
local ttl = idle
local deadline = tonumber(fields['$deadline'])
if deadline then
  ttl = math.max(1, math.min(ttl, deadline - now))
end
-- Like a read, an update rolls the TTL only once it has run below the threshold, so a busy session
-- is not re-expired and re-indexed on every write. Past the idle timeout means the timeout was
-- shortened since the last roll.
local stored_expires = tonumber(fields['$expires'])
local remaining = stored_expires and stored_expires - now
local roll = mode ~= 'update' or not remaining or remaining < tonumber(ARGV[11]) or remaining > idle
if roll then
  -- Readers decide from this whether the TTL needs rolling, without a script of their own.
  fields['$expires'] = tostring(now + ttl)
  set['$expires'] = true
else
  ttl = remaining
end

local writes = {}
if mode == 'update' then
  local deletes = {}
  for field in pairs(removed) do
    deletes[#deletes + 1] = field
  end
  call_batched('HDEL', target, deletes)
  for field in pairs(set) do
    writes[#writes + 1] = field
    writes[#writes + 1] = fields[field]
  end
else
  if mode == 'cycle' then
    redis.call('DEL', source)
  end
  for field, value in pairs(fields) do
    writes[#writes + 1] = field
    writes[#writes + 1] = value
  end
end
call_batched('HSET', target, writes)
if roll then
  redis.call('PEXPIRE', target, ttl)
end

local user = fields['$user']
if inline_index then
  if old_user and (old_user ~= user or mode == 'cycle') then
    redis.call('ZREM', index_key(prefix, old_user), mode == 'cycle' and ARGV[7] or ARGV[6])
  end
  if user and (roll or user ~= old_user) then
    index_add(index_key(prefix, user), ARGV[6], now, ttl, math.floor(idle / 10))
  end
end

return { 'ok', ttl, old_user or '', user or '', roll and '1' or '0' }

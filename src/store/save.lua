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
-- ARGV[10] n, the number of fields set; n field/value pairs follow, then the fields removed
--
-- Returns { 'ok', ttl ms } | { 'gone' } | { 'collision' } | { 'too_large' }; nothing is written
-- unless it returns 'ok'.

local mode, target, source = ARGV[1], KEYS[1], KEYS[2]
local prefix = ARGV[5]

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function is_metadata(field)
  return string.sub(field, 1, 1) == '$' and string.sub(field, 1, 7) ~= '$flash:'
end

local function index_key(user)
  return prefix .. 'user:' .. user
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
  local from = mode == 'cycle' and source or target
  local flat = redis.call('HGETALL', from)
  if #flat == 0 then
    return { 'gone' }
  end
  for i = 1, #flat, 2 do
    fields[flat[i]] = flat[i + 1]
    old_size = old_size + #flat[i] + #flat[i + 1]
  end
end

local old_user = fields['$user']
local deadline = tonumber(fields['$deadline'])
if deadline and deadline <= now then
  local dead_id = mode == 'cycle' and ARGV[7] or ARGV[6]
  redis.call('DEL', mode == 'cycle' and source or target)
  if old_user then
    redis.call('ZREM', index_key(old_user), dead_id)
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
local n = tonumber(ARGV[10])
for i = 11, 10 + 2 * n, 2 do
  fields[ARGV[i]] = ARGV[i + 1]
  set[ARGV[i]] = true
  removed[ARGV[i]] = nil
end
for i = 11 + 2 * n, #ARGV do
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

local ttl = tonumber(ARGV[2])
if deadline then
  ttl = math.min(ttl, deadline - now)
end
redis.call('PEXPIRE', target, ttl)

local user = fields['$user']
if old_user and (old_user ~= user or mode == 'cycle') then
  redis.call('ZREM', index_key(old_user), mode == 'cycle' and ARGV[7] or ARGV[6])
end
if user then
  local index = index_key(user)
  redis.call('ZADD', index, now + ttl, ARGV[6])
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  if redis.call('PTTL', index) < ttl then
    -- Outlive every indexed session, with slack so that not every write rewrites it.
    redis.call('PEXPIRE', index, ttl + math.floor(tonumber(ARGV[2]) / 10))
  end
end

return { 'ok', ttl }

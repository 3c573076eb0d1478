-- Apply one request's changes to a live session in place: the write nearly every request that
-- writes makes. The session must still exist (no resurrection); only the fields that changed are
-- written, and the cost does not grow with the size of the session: the size limit is enforced from
-- the stored size (`field.size`) and the current lengths of the changed fields.
--
-- KEYS[1]            the session hash
-- arg.idle           idle timeout, ms
-- arg.max_bytes      size limit, bytes of user fields' names and values
-- arg.prefix         key prefix (for the owner's index)
-- arg.key_id         key id of KEYS[1]
-- arg.clear          '1' to remove every user field before applying the rest
-- arg.inline_index   '1' to update the owner's index here; '0' on a cluster, where the caller does it
-- arg.touch_below    touch threshold, ms: the TTL is rolled only once it has run below this
-- arg.track          '1' when the near-cache tracks the key: read it again after writing it
-- arg.fence          '' unless the request holds the session's lock: its fencing token, which must
--                    still be the session's `$fence` (else nothing is written)
-- arg.sets           n, the number of fields set; from ARGV[first_extra], n field/value pairs
--                    follow, then the fields removed
--
-- Returns { 'ok', ttl ms, version, size, '1' if the TTL was rolled else '0', owner or '', when the
-- TTL runs out (unix ms) } | { 'gone' } | { 'too_large' } | { 'fenced' } (another request has taken
-- the lock since this one's expired); nothing is written unless it returns 'ok'.

local key = KEYS[1]
local removed_from = first_extra + 2 * tonumber(arg.sets)
local cleared = arg.clear == '1'
-- The fields whose current values the size limit needs: none after a clear.
local names = {}
if not cleared then
  for i = first_extra, removed_from - 1, 2 do
    names[#names + 1] = ARGV[i]
  end
  for i = removed_from, #ARGV do
    names[#names + 1] = ARGV[i]
  end
end
local m, now = live_session(key, names)
if not m then
  return { 'gone' }
end
if arg.fence ~= '' and redis.call('HGET', key, field.fence) ~= arg.fence then
  return { 'fenced' }
end

local old_size = live_size(key, m)
local size, removed = old_size, {}
if cleared then
  size = 0
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if not is_metadata(name) then
      removed[#removed + 1] = name
    end
  end
else
  for i, name in ipairs(names) do
    local current = m[6 + i]
    if current and not is_metadata(name) then
      size = size - #name - #current
    end
  end
end
for i = removed_from, #ARGV do
  removed[#removed + 1] = ARGV[i]
end
local writes = {}
for i = first_extra, removed_from - 1, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  writes[#writes + 1] = name
  writes[#writes + 1] = value
  -- Metadata is never counted in the size (no request changes any today; this keeps the count
  -- right if one ever does).
  if not is_metadata(name) then
    size = size + #name + #value
  end
end
if size > tonumber(arg.max_bytes) and size > old_size then
  return { 'too_large' }
end

call_batched('HDEL', key, removed)
local ttl, roll, version, expires = write_live(key, m, now, size, writes)
return { 'ok', ttl, version, size, roll and '1' or '0', m[2] or '', expires }

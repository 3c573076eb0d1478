-- The write nearly every request that writes makes, kept lean: user fields of a live session change
-- (set or removed), and nothing else does. A login, a clear, crate metadata or a change of more
-- fields than the caller allows here go through save.lua instead, whose update mode does the same.
--
-- KEYS[1]            the session hash; it must still exist (no resurrection)
-- arg.idle           idle timeout, ms
-- arg.max_bytes      size limit, bytes of user fields' names and values
-- arg.prefix         key prefix (for the owner's index)
-- arg.key_id         key id of KEYS[1]
-- arg.inline_index   '1' to update the owner's index here; '0' on a cluster, where the caller does it
-- arg.touch_below    touch threshold, ms: the TTL is rolled only once it has run below this
-- arg.track          '1' when the near-cache tracks the key: read it again after writing it
-- arg.sets           n, the number of fields set; from ARGV[first_extra], n field/value pairs
--                    follow, then the fields removed
--
-- Returns save.lua's reply to an update: { 'ok', ttl ms, owner or '', owner or '', '1' if the TTL
-- was rolled else '0', version, size } | { 'gone' } | { 'too_large' }; nothing is written unless
-- it returns 'ok'.

local key = KEYS[1]
local removed_from = first_extra + 2 * tonumber(arg.sets)
local names = {}
for i = first_extra, removed_from - 1, 2 do
  names[#names + 1] = ARGV[i]
end
for i = removed_from, #ARGV do
  names[#names + 1] = ARGV[i]
end
local m, now = live_session(key, names, arg)
if not m then
  return { 'gone' }
end

-- A session last saved before sizes were kept is counted once here.
local old_size = tonumber(m[5]) or user_size(redis.call('HGETALL', key))
local size = old_size
for i, name in ipairs(names) do
  local current = m[6 + i]
  if current then
    size = size - #name - #current
  end
end
local writes = {}
for i = first_extra, removed_from - 1 do
  writes[#writes + 1] = ARGV[i]
  size = size + #ARGV[i]
end
if size > tonumber(arg.max_bytes) and size > old_size then
  return { 'too_large' }
end

if removed_from <= #ARGV then
  redis.call('HDEL', key, unpack(ARGV, removed_from, #ARGV))
end
local ttl, roll, version = write_live(key, m, now, size, writes, arg)
local user = m[2] or ''
return { 'ok', ttl, user, user, roll and '1' or '0', version, size }

-- Delete a session, returning what it held (the owner, for a cluster's separate index update): used
-- for logout.
--
-- KEYS[1]            the session hash
-- arg.prefix         key prefix (for the owner's index)
-- arg.key_id         this session's key id
-- arg.inline_index   '1' to remove it from the owner's index here; '0' on a cluster, where the
--                    caller does it
--
-- Returns false when there was no live session, else its fields (flat field/value list).

local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
  return false
end
redis.call('DEL', KEYS[1])

local user, deadline
for i = 1, #fields, 2 do
  if fields[i] == field.user then
    user = fields[i + 1]
  elseif fields[i] == field.deadline then
    deadline = tonumber(fields[i + 1])
  end
end
if user and arg.inline_index == '1' then
  redis.call('ZREM', index_key(arg.prefix, user), arg.key_id)
end
if deadline and deadline <= now_ms() then
  return false
end
return fields

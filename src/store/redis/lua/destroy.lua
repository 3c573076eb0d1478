-- Delete a session (logout), returning its owner for a cluster's separate index update.
--
-- KEYS[1]            the session hash
-- arg.prefix         key prefix (for the owner's index)
-- arg.key_id         this session's key id
-- arg.inline_index   '1' to remove it from the owner's index here; '0' on a cluster, where the
--                    caller does it
--
-- Returns false when there was no session, else { owner or '' }.

local user = redis.call('HGET', KEYS[1], field.user)
if redis.call('DEL', KEYS[1]) == 0 then
  return false
end
if user and arg.inline_index == '1' then
  redis.call('ZREM', index_key(arg.prefix, user), arg.key_id)
end
return { user or '' }

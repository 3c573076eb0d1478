-- End the sessions of a user that carry a device handle (one server): each is deleted, with its
-- index entry, in this one step, so no cycle can carry it to a new id meanwhile (a cycle moves the
-- handle with the session, in one script too).
--
-- KEYS[1]      the user's index
-- arg.prefix   key prefix
-- arg.handle   the handle
--
-- Returns the key ids ended: none when no session of the user has the handle.

local ended = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(+inf')) do
  if redis.call('HGET', arg.prefix .. id, field.handle) == arg.handle then
    ended[#ended + 1] = id
  end
end
end_indexed(KEYS[1], arg.prefix, ended)
return ended

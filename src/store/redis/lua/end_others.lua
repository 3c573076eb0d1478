-- Log a user out of every other device (one server): every session in the user's index but the
-- asking one is deleted, with its index entry, in one step, so no login or cycle can slip between
-- reading the index and deleting.
--
-- KEYS[1]      the user's index
-- arg.prefix   key prefix
-- arg.keep     the asking session's key id
--
-- Returns the key ids ended.

local others = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if id ~= arg.keep then
    others[#others + 1] = id
  end
end
end_indexed(KEYS[1], arg.prefix, others)
return others

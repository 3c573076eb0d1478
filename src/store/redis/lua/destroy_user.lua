-- Log a user out everywhere, atomically (one server): every session in the user's index, the index
-- itself, and the session that asked, even if the index missed it, are deleted in one step, so no
-- login or cycle can slip between reading the index and deleting.
--
-- KEYS[1]      the user's index
-- KEYS[2]      the asking session's hash
-- arg.prefix   key prefix
--
-- Returns the key ids that the index held.

local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
delete_sessions(arg.prefix, ids)
redis.call('DEL', KEYS[1], KEYS[2])
return ids

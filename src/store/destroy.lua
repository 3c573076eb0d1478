-- Delete a session and its entry in its owner's index.
--
-- KEYS[1]  the session hash
-- ARGV[1]  key prefix (for the owner's index)
-- ARGV[2]  this session's key id

local user = redis.call('HGET', KEYS[1], '$user')
redis.call('DEL', KEYS[1])
if user then
  redis.call('ZREM', ARGV[1] .. 'user:' .. user, ARGV[2])
end
return 1

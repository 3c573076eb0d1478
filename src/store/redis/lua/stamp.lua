-- The last step of a login on a cluster: record in the new session the user's revocation epoch,
-- which index.lua returned when it admitted the session (see revoke.lua). Only if the session
-- still exists: a logout-everywhere may have deleted it since, and nothing may bring it back.
--
-- KEYS[1]      the session hash
-- arg.epoch    the epoch
--
-- Returns 1 if recorded, 0 if the session is gone.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], field.epoch, arg.epoch)
return 1

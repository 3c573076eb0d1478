-- On a cluster, a user's index lives on its own slot, so the session scripts cannot update it: the
-- store calls this script on the index key after them instead.
--
-- This is also where a logout-everywhere on a cluster is made to hold against a racing cycle: a
-- session moved to a new id carries the user's revocation epoch it was logged in under (its
-- `field.epoch`), and its new id enters the index only if no logout-everywhere has bumped the
-- epoch since (revoke.lua) and its device handle has not been ended meanwhile (end_handle.lua).
-- Otherwise the caller deletes the new key: the session is gone.
--
-- KEYS[1]       the user's index
-- arg.remove    key id to remove, or ''
-- arg.add       key id to add, or ''
-- arg.admit     how it enters: 'roll' (a session already indexed, at its new expiry: no check),
--               'login' (a session just bound to this user: always, and the reply carries the
--               epoch for the session to record), 'moved' (a bound session under a new id: only if
--               arg.epoch is still the user's epoch)
-- arg.epoch     for 'moved': the epoch the session recorded ('' for none: 0)
-- arg.handle    for 'moved': the session's device handle ('' for none)
-- arg.ttl       its time to live, ms
-- arg.slack     slack for the index's own TTL, ms
-- arg.cap       the most entries to keep, never the one added ('' for no limit)
--
-- Returns { 'ok', the user's epoch, key ids evicted by the cap… } (the caller deletes their
-- sessions) | { 'revoked' } (nothing added; arg.remove is removed all the same).

if arg.remove ~= '' then
  redis.call('ZREM', KEYS[1], arg.remove)
end
if arg.add == '' then
  return { 'ok', 0 }
end
local epoch = 0
if arg.admit ~= 'roll' then
  epoch = index_epoch(KEYS[1])
end
if arg.admit == 'moved' then
  if (tonumber(arg.epoch) or 0) < epoch then
    return { 'revoked' }
  end
  if arg.handle ~= '' then
    for _, marker in ipairs(ended_handles(KEYS[1])) do
      if marker[3] == arg.handle then
        return { 'revoked' }
      end
    end
  end
end
index_add(KEYS[1], arg.add, now_ms(), tonumber(arg.ttl), tonumber(arg.slack))
local reply = { 'ok', epoch }
for _, id in ipairs(index_cap(KEYS[1], arg.add, arg.cap)) do
  reply[#reply + 1] = id
end
return reply

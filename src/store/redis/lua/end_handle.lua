-- End a user's device on a cluster, first step: its session lives on another slot than the user's
-- index, so no script can match its handle and delete it at once. Instead this script, in one step
-- on the index's slot, records the handle as ended and lists the indexed sessions, whose handles
-- the caller then reads, deleting the sessions that carry it. A session that is not in the list is
-- one whose id is being cycled (written under its new id, not indexed yet): it carries the handle,
-- so index.lua refuses its new id and the cycle deletes it, as it does for a logout-everywhere.
--
-- The marker is the member `field.handle .. ':' .. ms .. ':' .. handle` of the index, scored +inf
-- (see lib.lua's ended_handles). A cycle under way when a device is ended lasts a few round
-- trips, so a marker is kept for the idle timeout at most, and only the newest MOST_MARKERS.
--
-- KEYS[1]      the user's index
-- arg.handle   the handle (a well-formed one: the caller checks)
-- arg.ttl      how long a marker is kept, ms (the idle timeout)
--
-- Returns the key ids that the index held.

local MOST_MARKERS = 32
local now = now_ms()
redis.call('ZADD', KEYS[1], '+inf', field.handle .. ':' .. string.format('%d', now) .. ':' .. arg.handle)
local markers = ended_handles(KEYS[1])
for i, marker in ipairs(markers) do
  if marker[2] <= now - tonumber(arg.ttl) or i <= #markers - MOST_MARKERS then
    redis.call('ZREM', KEYS[1], marker[1])
  end
end
if redis.call('PTTL', KEYS[1]) < tonumber(arg.ttl) then
  redis.call('PEXPIRE', KEYS[1], arg.ttl)
end
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(+inf')

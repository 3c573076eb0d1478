-- Log a user out everywhere on a cluster, first step: the sessions live on other slots than the
-- user's index, so no script can delete them all at once. Instead this script, in one step on the
-- index's slot, bumps the user's revocation epoch and lists the indexed sessions, which the caller
-- then deletes one by one. A session that is not in the list is one whose id is being cycled
-- (written under its new id, not indexed yet): it carries the old epoch, so index.lua refuses its
-- new id and the cycle deletes it. The entries stay until the caller has deleted their sessions,
-- so that a failed logout can be tried again.
--
-- The epoch is the member `field.epoch .. ':' .. n` of the index, scored +inf (see lib.lua's
-- index_epoch_member): the index key has no hash tag, so no other key is sure to share its slot.
-- n is the server's clock in ms, and always more than before: should the index expire (once no
-- session of the user lives) and the epoch restart from 0, the next bump still exceeds every epoch
-- that a session may have recorded.
--
-- KEYS[1]   the user's index
-- arg.ttl   the least time the epoch must be kept, ms (the idle timeout: longer than any cycle
--           that may be under way)
--
-- Returns the new epoch, then the key ids that the index held.

local now = now_ms()
local epoch = math.max(now, index_epoch(KEYS[1]) + 1)
local old = index_epoch_member(KEYS[1])
if old then
  redis.call('ZREM', KEYS[1], old)
end
redis.call('ZADD', KEYS[1], '+inf', field.epoch .. ':' .. string.format('%d', epoch))
if redis.call('PTTL', KEYS[1]) < tonumber(arg.ttl) then
  redis.call('PEXPIRE', KEYS[1], arg.ttl)
end
local reply = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(+inf')
table.insert(reply, 1, string.format('%d', epoch))
return reply

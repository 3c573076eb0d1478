-- On a cluster, a user's index lives on its own slot, so the session scripts cannot update it: the
-- store calls this script on the index key after them instead.
--
-- KEYS[1]       the user's index
-- arg.remove    key id to remove, or ''
-- arg.add       key id to add, or ''
-- arg.ttl       its time to live, ms
-- arg.slack     slack for the index's own TTL, ms
-- arg.cap       the most entries to keep, never the one added ('' for no limit)
--
-- Returns the key ids evicted by the cap, whose sessions the caller deletes.

if arg.remove ~= '' then
  redis.call('ZREM', KEYS[1], arg.remove)
end
if arg.add ~= '' then
  index_add(KEYS[1], arg.add, now_ms(), tonumber(arg.ttl), tonumber(arg.slack))
  return index_cap(KEYS[1], arg.add, arg.cap)
end
return {}

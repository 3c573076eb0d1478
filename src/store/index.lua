-- On a cluster, a user's index lives on its own slot, so the session scripts cannot update it: the
-- store calls this script on the index key after them instead.
--
-- KEYS[1]  the user's index
-- ARGV[1]  key id to remove, or ''
-- ARGV[2]  key id to add, or ''
-- ARGV[3]  its time to live, ms
-- ARGV[4]  slack for the index's own TTL, ms

if ARGV[1] ~= '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
if ARGV[2] ~= '' then
  index_add(KEYS[1], ARGV[2], now_ms(), tonumber(ARGV[3]), tonumber(ARGV[4]))
end
return 1

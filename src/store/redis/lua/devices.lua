-- A user's live sessions, for their device list (one server, where a script may read the sessions
-- beside the index): each key id whose index entry has not expired and whose session still lives.
--
-- KEYS[1]      the user's index
-- arg.prefix   key prefix
--
-- Returns, per live session, six items: its key id, `$created`, `$seen`, `$ua`, `$ip` and `$handle`
-- (each false when absent).

local reply = {}
local live = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%d', now_ms()), '(+inf')
for _, id in ipairs(live) do
  local m = redis.call('HMGET', arg.prefix .. id, field.created, field.seen, field.user_agent,
                       field.ip, field.handle)
  if m[1] then
    reply[#reply + 1] = id
    for i = 1, 5 do
      reply[#reply + 1] = m[i]
    end
  end
end
return reply

-- List the live presence members of a channel, dropping those whose heartbeat
-- lapsed (by the Redis server's clock).
--
-- KEYS[1] sorted set member id -> expiry (ms), KEYS[2] hash member id -> info JSON.
-- Returns a flat list: id1, info1, id2, info2, ...
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms)
for _, member in ipairs(stale) do
  redis.call('HDEL', KEYS[2], member)
end
if #stale > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
end
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local result = {}
for _, member in ipairs(members) do
  result[#result + 1] = member
  result[#result + 1] = redis.call('HGET', KEYS[2], member) or '{}'
end
return result

-- Add or refresh a presence member, timed by the Redis server's clock (never a
-- client's, so skewed clocks cannot expire members early or keep them forever).
--
-- KEYS[1] sorted set member id -> expiry (ms), KEYS[2] hash member id -> info JSON.
-- ARGV[1] member id, ARGV[2] info JSON, ARGV[3] time to live in ms.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now_ms + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return now_ms + ttl

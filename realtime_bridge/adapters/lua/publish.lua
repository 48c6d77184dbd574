-- Publish a batch of events atomically: drop ids already seen, append the rest
-- to their channel's capped stream (history), and PUBLISH them for live fan-out.
--
-- KEYS, per event i (1-based): KEYS[2i-1] the channel's stream, KEYS[2i] the
--   event id's dedupe key.
-- ARGV[1] stream MAXLEN, ARGV[2] '~' (approximate trim) or '=' (exact),
-- ARGV[3] dedupe window in seconds, ARGV[4] stream idle expiry in seconds,
-- then per event i: ARGV[3+2i] the pub/sub topic, ARGV[4+2i] the encoded event.
--
-- Returns, per event, its stream entry id, or 0 when the id was a duplicate.
-- The live message is "<stream entry id>\n<encoded event>", so a subscriber can
-- resume from history after the entry it last saw.
local maxlen, trim, dedupe_ttl, stream_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local result = {}
for i = 1, #KEYS / 2 do
  local stream, dedupe = KEYS[2 * i - 1], KEYS[2 * i]
  local topic, payload = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  if redis.call('EXISTS', dedupe) == 1 then
    result[i] = 0
  else
    local entry = redis.call('XADD', stream, 'MAXLEN', trim, maxlen, '*', 'e', payload)
    redis.call('SET', dedupe, entry, 'EX', dedupe_ttl)
    redis.call('EXPIRE', stream, stream_ttl)
    redis.call('PUBLISH', topic, entry .. '\n' .. payload)
    result[i] = entry
  end
end
return result

-- Publish a batch of events atomically: drop ids already seen, append the rest
-- to their channel's capped stream (history), and PUBLISH them for live fan-out.
--
-- KEYS, per event i (1-based): KEYS[2i-1] the channel's stream
--   ("<prefix>:{<channel>}:stream"), KEYS[2i] the event id's dedupe key.
-- ARGV[1] stream MAXLEN, ARGV[2] '~' (approximate trim) or '=' (exact),
-- ARGV[3] dedupe window in seconds, ARGV[4] stream idle expiry in seconds,
-- then ARGV[4+i] the encoded event i.
--
-- The pub/sub topic is the stream key without its ":stream" suffix. The live
-- message is "<stream entry id>\n<encoded event>", so a subscriber can resume
-- from history after the entry it last saw.
--
-- Returns the positions (1-based) of the events dropped as duplicates: the
-- common case is an empty reply, cheap to send and to parse.
local maxlen, trim, dedupe_ttl, stream_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local duplicates = {}
local touched = {}
for i = 1, #KEYS / 2 do
  local stream, dedupe = KEYS[2 * i - 1], KEYS[2 * i]
  local payload = ARGV[4 + i]
  if redis.call('EXISTS', dedupe) == 1 then
    duplicates[#duplicates + 1] = i
  else
    local entry = redis.call('XADD', stream, 'MAXLEN', trim, maxlen, '*', 'e', payload)
    redis.call('SET', dedupe, entry, 'EX', dedupe_ttl)
    redis.call('PUBLISH', string.sub(stream, 1, -8), entry .. '\n' .. payload)
    touched[stream] = true
  end
end
for stream in pairs(touched) do
  redis.call('EXPIRE', stream, stream_ttl)
end
return duplicates
